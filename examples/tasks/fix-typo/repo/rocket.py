def hotle_frost(a, b):
    return a + b
