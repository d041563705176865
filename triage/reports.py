"""Final radiology reports as a second ground truth: a label per finding read from the report
text by stated rules, so monitoring does not depend on radiologists clicking feedback (as the
ACR Assess-AI registry measures agreement with the report).

The rules, per sentence (split on . ; ! ? before a space, and line breaks), leaving out the
indication, history, request, comparison and technique sections:
- a sentence mentions a finding when it contains one of the finding's terms (REPORT_TERMS,
  whole words, case-insensitive, British and American spellings);
- a negation cue before the term in the same sentence ("no", "without", "negative for",
  "no evidence of", "free of", "resolved") or after it ("is excluded", "is not seen", "ruled
  out", "absent") makes that mention absent, unless the clause is broken by "but" / "however";
- an uncertainty cue ("possible", "probable", "suspected", "suspicious for", "may represent",
  "cannot be excluded", "cannot exclude", "questionable", "equivocal", "likely", "?", and the
  request phrases "rule out", "r/o", "to exclude", "query", "assess for") makes it uncertain (a
  negated uncertainty, "no suspicious ...", is absent); "no change in", "no increase in" and
  the like do not negate;
- otherwise the mention is present.
The report's label for a finding: present if any mention is present, else uncertain if any is
uncertain, else absent if any is absent, else not mentioned. Only present and absent are used
as truth; uncertain and not mentioned are counted, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.db import transaction
from django.utils import timezone

from triage.findings import Finding
from triage.models import ReportLabel
from worklist.models import Study

Label = ReportLabel.Label

REPORT_TERMS: dict[Finding, tuple[str, ...]] = {
    Finding.INTRACRANIAL_HEMORRHAGE: (
        "intracranial hemorrhage", "intracranial haemorrhage", "hemorrhage", "haemorrhage",
        "hematoma", "haematoma", "bleed", "bleeding", "subdural", "extradural", "epidural",
        "subarachnoid", "intraparenchymal", "intraventricular", "sah", "sdh", "edh", "ich",
    ),
    Finding.PULMONARY_EMBOLISM: (
        "pulmonary embolism", "pulmonary emboli", "pulmonary embolus", "embolism", "emboli",
        "embolus", "filling defect", "filling defects", "pe", "thromboembolism",
    ),
    Finding.PNEUMOTHORAX: ("pneumothorax", "pneumothoraces", "ptx", "tension pneumothorax"),
    Finding.FRACTURE: ("fracture", "fractures", "fractured", "break", "subluxation"),
}  # fmt: skip
NEGATION_BEFORE = (
    "no", "not", "without", "negative for", "no evidence of", "no sign of", "no signs of",
    "free of", "absence of", "resolved", "rather than",
)  # fmt: skip
NEGATION_AFTER = (
    "is excluded", "are excluded", "excluded", "is not seen", "are not seen", "not seen",
    "not identified", "ruled out", "is absent", "are absent", "absent", "has resolved",
)  # fmt: skip
UNCERTAIN = (
    "possible", "possibly", "probable", "probably", "suspected", "suspicious for", "suspicious",
    "may represent", "may be", "could represent", "cannot be excluded", "cannot exclude",
    "can not be excluded", "not excluded", "questionable", "equivocal", "likely", "?",
    # a request, not a finding: "to rule out PE", "r/o SAH", "assess for fracture"
    "rule out", "r/o", "to exclude", "exclude", "query", "assess for", "evaluate for",
)  # fmt: skip
# "No change in the subdural haematoma" says it is there: these do not negate what follows.
PSEUDO_NEGATION = re.compile(
    r"\bno (?:significant |interval )?(?:change|increase|decrease|growth)\b|\bnot only\b",
    re.IGNORECASE,
)
CLAUSE_BREAK = re.compile(
    r"\b(but|however|although|though)\b|,\s*(?:and\s+)?(?=there)|,\s*and\b", re.IGNORECASE
)
# Sections that state the request or the history, not what the images show: left out.
SECTION = re.compile(
    r"\b(indication|clinical (?:history|information|details|indication)|history|reason for "
    r"(?:exam|examination|study|request)|request|comparison|technique|findings|impression|"
    r"conclusion|opinion|report)\s*:",
    re.IGNORECASE,
)
NOT_IMAGING = {"indication", "history", "request", "comparison", "technique"}


def _phrase(words: tuple[str, ...]) -> re.Pattern[str]:
    alternatives = "|".join(
        re.escape(w) if w == "?" else r"\b" + re.escape(w) + r"\b"
        for w in sorted(words, key=len, reverse=True)
    )
    return re.compile(alternatives, re.IGNORECASE)


TERMS = {finding: _phrase(terms) for finding, terms in REPORT_TERMS.items()}
NEGATED_BEFORE = _phrase(NEGATION_BEFORE)
NEGATED_AFTER = _phrase(NEGATION_AFTER)
UNSURE = _phrase(UNCERTAIN)
NOT_EXCLUDED = re.compile(
    r"\b(?:cannot|can not|could not|not)\s+(?:be\s+)?(?:excluded|ruled out)\b|\bcannot exclude\b",
    re.IGNORECASE,
)


def _imaging_text(text: str) -> str:
    """The report without its indication, history, request, comparison and technique sections
    (a header ends the section before it)."""
    kept, position, keep = [], 0, True
    for header in SECTION.finditer(text):
        if keep:
            kept.append(text[position : header.start()])
        name = header.group(1).lower()
        keep = not any(word in name for word in NOT_IMAGING)
        position = header.end()
    if keep:
        kept.append(text[position:])
    return " ".join(kept)


def _sentences(text: str) -> list[str]:
    """Sentences end at . ; ! ? followed by a space or the end (not "4.5 mm", not "?PE"), and at
    line breaks (the caller joins a report's wrapped lines with spaces)."""
    parts = re.split(r"(?:[.;!]|(?<=\?))(?=\s|$)|[\n\r]+", _imaging_text(text))
    return [part.strip() for part in parts if part.strip()]


def _mention(sentence: str, start: int, end: int) -> str:
    """How the term at [start, end) is stated: absent, uncertain or present."""
    before, after = sentence[:start], sentence[end:]
    breaks = list(CLAUSE_BREAK.finditer(before))
    if breaks:
        before = before[breaks[-1].end() :]
    following = CLAUSE_BREAK.search(after)
    if following:
        after = after[: following.start()]
    before = PSEUDO_NEGATION.sub(" ", before)
    if NOT_EXCLUDED.search(before) or NOT_EXCLUDED.search(after):
        return Label.UNCERTAIN  # "cannot be excluded" is a doubt, not a negation
    if NEGATED_BEFORE.search(before) or NEGATED_AFTER.search(after):
        return Label.ABSENT
    if UNSURE.search(before) or UNSURE.search(after):
        return Label.UNCERTAIN
    return Label.PRESENT


def report_labels(text: str) -> dict[str, str]:
    """Every finding's label from one report's text (see the module's rules)."""
    labels: dict[str, str] = {}
    for finding, pattern in TERMS.items():
        mentions = [
            _mention(sentence, match.start(), match.end())
            for sentence in _sentences(text)
            for match in pattern.finditer(sentence)
        ]
        for label in (Label.PRESENT, Label.UNCERTAIN, Label.ABSENT):
            if label in mentions:
                labels[finding.value] = label
                break
        else:
            labels[finding.value] = Label.NOT_MENTIONED
    return labels


@dataclass(frozen=True, kw_only=True)
class ReportFiled:
    study_id: int | None  # None: no study with the report's accession (nothing to label)
    labels: dict[str, str]


def report_file(*, accession: str, text: str, status: str, control_id: str) -> ReportFiled:
    """A final (F) or corrected (C) report for `accession`: its labels replace the study's
    earlier ones. Preliminary reports are not truth and are not filed (the caller refuses)."""
    labels = report_labels(text)
    study = Study.objects.filter(accession_number=accession).order_by("-pk").first()
    if study is None:
        return ReportFiled(study_id=None, labels=labels)
    now = timezone.now()
    with transaction.atomic():
        for finding, label in labels.items():
            ReportLabel.objects.update_or_create(
                study=study,
                finding=finding,
                defaults={"label": label, "status": status, "control_id": control_id[:64],
                          "received_at": now},
            )  # fmt: skip
    return ReportFiled(study_id=study.pk, labels=labels)
