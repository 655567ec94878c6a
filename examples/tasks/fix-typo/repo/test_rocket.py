from rocket import hotel_frost

assert hotel_frost(6, 18) == 24
print('ok')
