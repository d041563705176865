"""The triage domain: findings, thresholds, the triage policy, alerts, feedback, analytics and
the reading-room pages. The project's configuration lives apart, in `triage.config`."""
