"""The administrator's page for results out: each destination's health, adding and pausing a
destination, and sending a waiting or failed message again. Every change is audited."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse

from triage.audit import audit_record
from triage.findings import FINDINGS
from triage.models import OutboundDestination
from triage.outbound.selectors import (
    destination_latest_problem,
    destinations_health,
    messages_undelivered,
)
from triage.outbound.services import outbound_message_resend
from triage.roles import Role, role_required
from worklist.dicom.identifiers import ae_title_for_record


class DestinationForm(forms.ModelForm):  # type: ignore[type-arg]
    findings = forms.MultipleChoiceField(
        choices=[(finding, finding) for finding in FINDINGS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="none ticked: every finding",
    )
    url = forms.URLField(required=False, assume_scheme="https", help_text="STOW-RS base URL")

    class Meta:
        model = OutboundDestination
        fields = ["name", "kind", "ae_title", "host", "port", "url", "token", "findings",
                  "send_unflagged"]  # fmt: skip
        widgets = {"token": forms.PasswordInput(render_value=False)}

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind in (OutboundDestination.Kind.DICOM, OutboundDestination.Kind.HL7):
            if not data.get("host") or not data.get("port"):
                raise forms.ValidationError("A DICOM or HL7 destination needs a host and a port.")
            if not 0 < int(data["port"]) < 65536:
                raise forms.ValidationError("The port must be between 1 and 65535.")
        if kind == OutboundDestination.Kind.DICOM:
            title = data.get("ae_title", "")
            if not title or ae_title_for_record(title) != title:
                raise forms.ValidationError(
                    "A DICOM destination needs its AE title (1-16 printable characters)."
                )
        if kind == OutboundDestination.Kind.STOW and not str(data.get("url", "")).startswith(
            ("http://", "https://")
        ):
            raise forms.ValidationError("A STOW-RS destination needs an http(s) base URL.")
        return data


def _audit(request: HttpRequest, action: str, detail: dict[str, Any]) -> None:
    audit_record(
        action=action,
        actor_id=request.user.pk,
        channel="page",
        remote_addr=request.META.get("REMOTE_ADDR"),
        detail=detail,
    )


@role_required(Role.ADMINISTRATOR)
def outbound_page(request: HttpRequest) -> HttpResponse:
    form = DestinationForm()
    if request.method == "POST":
        action = request.POST.get("action", "")
        if action == "add":
            form = DestinationForm(request.POST)
            if form.is_valid():
                destination = form.save()
                _audit(request, "outbound.destination_add", {"destination": destination.pk})
                messages.success(request, f"Destination {destination.name} added.")
                return HttpResponseRedirect(reverse("admin-outbound"))
        elif action in ("pause", "resume"):
            raw = request.POST.get("destination", "")
            destination = (
                OutboundDestination.objects.filter(pk=int(raw)).first() if raw.isdigit() else None
            )
            if destination is not None:
                destination.active = action == "resume"
                destination.save(update_fields=["active"])
                _audit(request, f"outbound.destination_{action}", {"destination": destination.pk})
            return HttpResponseRedirect(reverse("admin-outbound"))
        elif action == "resend":
            raw = request.POST.get("message", "")
            if raw.isdigit() and outbound_message_resend(
                message_id=int(raw),
                actor_id=request.user.pk,
                remote_addr=request.META.get("REMOTE_ADDR", ""),
            ):
                messages.success(request, f"Message {raw} queued to send again.")
            else:
                messages.error(request, "No such message waiting or failed.")
            return HttpResponseRedirect(reverse("admin-outbound"))
        else:
            messages.error(request, "Unknown action.")
    destinations = list(destinations_health())
    for destination in destinations:
        destination.latest_problem = destination_latest_problem(destination)  # type: ignore[attr-defined]
    return render(
        request,
        "triage/outbound.html",
        {"destinations": destinations, "undelivered": messages_undelivered(), "form": form},
        status=400 if form.errors else 200,
    )
