"""What the web layer calls."""

from users.store import get_usr


def display_name(user_id: int) -> str:
    user = get_usr(user_id)
    return f"{user['name']} <{user['email']}>"


def email_of(user_id: int) -> str:
    return get_usr(user_id)["email"]
