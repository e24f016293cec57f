"""Safe rollout: the seed checklist's phases, its checks, rollback and resume (docs/rollout.md)."""
