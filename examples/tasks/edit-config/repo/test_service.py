import unittest

from service import load_config


class ProductionConfigTest(unittest.TestCase):
    def setUp(self):
        self.config = load_config()

    def test_server(self):
        server = self.config["server"]
        self.assertEqual(server["port"], 8080)
        self.assertIs(server["debug"], False)
        self.assertEqual(server["host"], "0.0.0.0")
        self.assertEqual(server["workers"], 4)

    def test_logging(self):
        self.assertEqual(self.config["logging"], {"level": "warning", "format": "json"})

    def test_cache(self):
        self.assertEqual(self.config["cache"], {"enabled": True, "ttl_s": 600})

    def test_database_is_unchanged(self):
        self.assertEqual(
            self.config["database"],
            {"url": "postgresql://orders@db/orders", "pool_size": 10},
        )


if __name__ == "__main__":
    unittest.main()
