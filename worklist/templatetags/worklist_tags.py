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
