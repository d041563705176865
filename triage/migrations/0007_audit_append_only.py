"""The audit log is append-only for everyone, administrators and the application included: on
PostgreSQL a trigger refuses UPDATE and DELETE of audit rows (the embedded SQLite demo has no
such guard)."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION triage_audit_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION USING MESSAGE = 'the audit log is append-only (' || TG_OP || ' refused)';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER triage_audit_append_only BEFORE UPDATE OR DELETE ON triage_auditevent
    FOR EACH ROW EXECUTE FUNCTION triage_audit_append_only();
"""
DROP = """
DROP TRIGGER IF EXISTS triage_audit_append_only ON triage_auditevent;
DROP FUNCTION IF EXISTS triage_audit_append_only();
"""


def _on_postgresql(sql: str):
    def run(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql)

    return run


class Migration(migrations.Migration):
    dependencies = [("triage", "0006_triage_dispatch")]

    operations = [migrations.RunPython(_on_postgresql(CREATE), _on_postgresql(DROP))]
