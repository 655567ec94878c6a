import unittest

from textkit import slugify, strip_accents, truncate


class StripAccentsTest(unittest.TestCase):
    def test_removes_accents(self):
        self.assertEqual(strip_accents("café crème"), "cafe creme")


class TruncateTest(unittest.TestCase):
    def test_short_text_is_kept(self):
        self.assertEqual(truncate("abc", 5), "abc")

    def test_long_text_is_cut(self):
        self.assertEqual(truncate("abcdefgh", 6), "abc...")


class SlugifyTest(unittest.TestCase):
    def test_words_are_joined_by_hyphens(self):
        self.assertEqual(slugify("Hello World"), "hello-world")

    def test_accents_are_dropped(self):
        self.assertEqual(slugify("Crème Brûlée"), "creme-brulee")

    def test_punctuation_and_runs_of_spaces_collapse(self):
        self.assertEqual(slugify("  Ready,   set... go!  "), "ready-set-go")

    def test_digits_are_kept(self):
        self.assertEqual(slugify("Top 10 tips (2024)"), "top-10-tips-2024")

    def test_nothing_left_gives_an_empty_slug(self):
        self.assertEqual(slugify("!!!"), "")


if __name__ == "__main__":
    unittest.main()
