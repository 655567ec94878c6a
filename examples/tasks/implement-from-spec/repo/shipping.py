"""Shipping charges of the shop's orders."""


def shipping_cost(subtotal: float, weight_kg: float, zone: str) -> float:
    """The shipping charge of an order in euros, as docs/SPEC.md specifies."""
    raise NotImplementedError("shipping_cost: implement it from docs/SPEC.md")
