import unittest

from weather.convert import UNITS, celsius_to_kelvin, convert
from weather.report import report


class ConvertTest(unittest.TestCase):
    def test_fahrenheit(self):
        self.assertAlmostEqual(convert(100, "F"), 212)

    def test_kelvin(self):
        self.assertAlmostEqual(celsius_to_kelvin(0), 273.15)
        self.assertAlmostEqual(convert(-273.15, "K"), 0)

    def test_units_list_kelvin(self):
        self.assertIn("K", UNITS)

    def test_unknown_unit(self):
        with self.assertRaises(ValueError):
            convert(1, "X")


class ReportTest(unittest.TestCase):
    def test_celsius_and_fahrenheit_have_a_degree_sign(self):
        self.assertEqual(report("Oslo", 1.0), "Oslo: 1.0 °C")
        self.assertEqual(report("Oslo", 1.0, "F"), "Oslo: 33.8 °F")

    def test_kelvin_has_no_degree_sign(self):
        self.assertEqual(report("Oslo", 1.0, "K"), "Oslo: 274.1 K")


if __name__ == "__main__":
    unittest.main()
