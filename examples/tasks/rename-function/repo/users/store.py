"""Keeps users by id."""

_USERS: dict[int, dict] = {}


def add_user(user_id: int, name: str, email: str) -> dict:
    user = {"id": user_id, "name": name, "email": email}
    _USERS[user_id] = user
    return user


def get_usr(user_id: int) -> dict:
    """The user with `user_id`; KeyError names the missing id."""
    try:
        return _USERS[user_id]
    except KeyError:
        raise KeyError(f"no user with id {user_id}") from None
