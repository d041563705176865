"""The layout holds: the findings catalogue imports without a worker stack, the web side reads
model cards and thresholds without ONNX Runtime, and the apps import in one direction."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, child_environment


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=child_environment(),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_findings_catalogue_imports_without_celery_or_django_setup():
    run = _python(
        "import sys, triage.findings\n"
        "heavy = ('celery', 'kombu', 'onnxruntime', 'django.db')\n"
        "loaded = [m for m in heavy if m in sys.modules]\n"
        "assert not loaded, loaded\n"
        "print(len(triage.findings.Finding))"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "4"


def test_web_process_loads_without_onnx_runtime_or_the_senders():
    run = _python(
        "import sys, django\n"
        "django.setup()\n"
        "import triage.selectors, triage.thresholds, inference.registry\n"
        "import triage.config.urls, triage.config.asgi  # every page, API and socket\n"
        "assert len(inference.registry.registry_current().models) == 4\n"
        "assert 'onnxruntime' not in sys.modules\n"
        "# highdicom loads in the outbound workers only (about 0.5 s at every process start).\n"
        "assert 'highdicom' not in sys.modules\n"
        "print('ok')"
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "ok"


def test_apps_import_each_other_in_one_direction():
    tool = ROOT.parent / "shared" / "tools" / "app_imports.py"
    run = subprocess.run(
        [sys.executable, str(tool), str(ROOT)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "acyclic" in run.stdout
    assert "worklist ->" not in run.stdout  # worklist is the bottom layer
    assert "inference -> triage" not in run.stdout
