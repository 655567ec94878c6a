import unittest

from shipping import shipping_cost


class DomesticTest(unittest.TestCase):
    def test_first_kilogram(self):
        self.assertEqual(shipping_cost(10.00, 0.2, "domestic"), 4.95)

    def test_started_kilograms_are_charged_whole(self):
        self.assertEqual(shipping_cost(10.00, 2.01, "domestic"), 5.95)

    def test_zero_weight_counts_as_one_kilogram(self):
        self.assertEqual(shipping_cost(10.00, 0, "domestic"), 4.95)

    def test_free_from_fifty_euros(self):
        self.assertEqual(shipping_cost(50.00, 12.5, "domestic"), 0.0)
        self.assertEqual(shipping_cost(49.99, 1, "domestic"), 4.95)


class InternationalTest(unittest.TestCase):
    def test_per_kilogram(self):
        self.assertEqual(shipping_cost(10.00, 3, "international"), 18.00)

    def test_never_free(self):
        self.assertEqual(shipping_cost(500.00, 1, "international"), 14.00)


class ZoneTest(unittest.TestCase):
    def test_unknown_zone(self):
        with self.assertRaises(ValueError):
            shipping_cost(10.00, 1, "moon")


if __name__ == "__main__":
    unittest.main()
