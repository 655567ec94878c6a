"""Command-line entry: prints a user's display name."""

import sys

from users import add_user, get_usr
from users.api import display_name


def main(argv: list[str]) -> int:
    add_user(1, "Ada", "ada@example.org")
    user_id = int(argv[1]) if len(argv) > 1 else 1
    print(get_usr(user_id)["name"], "/", display_name(user_id))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
