from django import template

register = template.Library()

SHORT = {
    "intracranial_hemorrhage": "ICH",
    "pulmonary_embolism": "PE",
    "pneumothorax": "PTX",
    "fracture": "FX",
}


@register.filter
def finding_short(finding: str) -> str:
    return SHORT.get(finding, finding)


@register.filter
def score(value: float | str | None) -> str:
    """A score or threshold with the digits that tell it apart (two at least, six at most):
    the shipped operating points sit near 1 (0.9968, 0.99992), which two decimals showed as
    1.00, and a threshold form filled in with 1.00 would have set that."""
    if value is None or value == "":
        return ""
    text = f"{float(value):.6f}".rstrip("0")
    whole, _, decimals = text.partition(".")
    return f"{whole}.{decimals.ljust(2, '0')}"
