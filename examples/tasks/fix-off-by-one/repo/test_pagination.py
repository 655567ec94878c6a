import unittest

from pagination import page, page_count


class PageCountTest(unittest.TestCase):
    def test_exact_and_partial_pages(self):
        self.assertEqual(page_count(10, 5), 2)
        self.assertEqual(page_count(11, 5), 3)
        self.assertEqual(page_count(0, 5), 0)

    def test_rejects_non_positive_page_size(self):
        with self.assertRaises(ValueError):
            page_count(3, 0)


class PageTest(unittest.TestCase):
    items = list(range(1, 12))  # 1..11

    def test_first_page(self):
        self.assertEqual(page(self.items, 1, 5), [1, 2, 3, 4, 5])

    def test_middle_page(self):
        self.assertEqual(page(self.items, 2, 5), [6, 7, 8, 9, 10])

    def test_last_partial_page(self):
        self.assertEqual(page(self.items, 3, 5), [11])

    def test_out_of_range(self):
        with self.assertRaises(IndexError):
            page(self.items, 4, 5)
        with self.assertRaises(IndexError):
            page(self.items, 0, 5)

    def test_empty_list_has_an_empty_first_page(self):
        self.assertEqual(page([], 1, 5), [])


if __name__ == "__main__":
    unittest.main()
