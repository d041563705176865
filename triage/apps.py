from django.apps import AppConfig


class TriageConfig(AppConfig):
    name = "triage"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.contrib.admin.models import LogEntry
        from django.db.models.signals import post_save

        from triage.arrivals import studies_ready_received
        from triage.audit import audit_access_denied, audit_admin_change
        from worklist.signals import access_denied, studies_ready

        # The listener (worklist) refuses; triage, above it, keeps the audit.
        access_denied.connect(audit_access_denied, dispatch_uid="triage.audit_access_denied")
        # A study ready on its association's release: dashboards told, triage queued.
        studies_ready.connect(studies_ready_received, dispatch_uid="triage.studies_ready")
        # A change made in the Django admin is audited with its author, as every other one.
        post_save.connect(audit_admin_change, sender=LogEntry, dispatch_uid="triage.audit_admin")
