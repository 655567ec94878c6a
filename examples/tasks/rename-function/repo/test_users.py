import unittest

import app
from users import add_user, get_user
from users.api import display_name, email_of


class UsersTest(unittest.TestCase):
    def setUp(self):
        add_user(7, "Grace", "grace@example.org")

    def test_get_user(self):
        self.assertEqual(get_user(7)["name"], "Grace")

    def test_missing_user_names_the_id(self):
        with self.assertRaisesRegex(KeyError, "42"):
            get_user(42)

    def test_api_uses_the_store(self):
        self.assertEqual(display_name(7), "Grace <grace@example.org>")
        self.assertEqual(email_of(7), "grace@example.org")

    def test_app_runs(self):
        self.assertEqual(app.main(["app", "1"]), 0)


if __name__ == "__main__":
    unittest.main()
