"""``wacanon rollout plan|apply|resume`` and ``wacanon rollback`` as an operator runs
them (real subprocesses on a SQLite file): the plan marks where the flags are, apply
prints what it changed and lands exactly on the step, rollback and resume undo each
other — also a shopper's own override, which a global rollback must beat."""

from __future__ import annotations

from pathlib import Path

from tests.test_cli_service import config, wacanon

#: An empty variable counts as unset: the defaults apply, whatever the shell has.
CLEAN_ENV = dict.fromkeys(
    (
        "WHATSAPP_CANONICAL_EVENTS_ENABLED",
        "WHATSAPP_CANONICAL_SHADOW_MODE",
        "WHATSAPP_ROUTING_ENABLED",
        "WHATSAPP_GROUP_ROUTING_ENABLED",
    ),
    "",
)


def prepare(tmp_path: Path) -> None:
    """A SQLite file at head; servers re-read flags every 0.2 s (a resume waits 0.4 s)."""
    path = config(tmp_path)
    path.write_text(path.read_text() + "flag_refresh_seconds = 0.2\n")
    assert run(tmp_path, "db", "upgrade")[0] == 0


def run(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    done = wacanon(tmp_path, *args, "--config", str(tmp_path / "wacanon.toml"), env=CLEAN_ENV)
    return done.returncode, done.stdout, done.stderr


def marked(plan_output: str) -> list[str]:
    return [line for line in plan_output.splitlines() if line.startswith("← Phase")]


def test_plan_apply_and_the_marked_step(tmp_path: Path) -> None:
    prepare(tmp_path)
    code, out, _ = run(tmp_path, "rollout", "plan")
    assert code == 0
    assert marked(out) == ["← Phase 0: development: shadow mode, nothing stored"]
    assert "WHATSAPP_CANONICAL_SHADOW_MODE_PERCENT=90" in out  # 10 % leave shadow on day 1

    code, _, err = run(tmp_path, "rollout", "apply", "--phase", "2")
    assert code == 2
    assert "--allow SHOPPER" in err

    code, out, _ = run(tmp_path, "rollout", "apply", "--phase", "2", "--allow", "shop-beta")
    assert code == 0
    assert "WHATSAPP_ROUTING_ENABLED_ALLOWLIST: (none) → shop-beta" in out
    assert "WHATSAPP_CANONICAL_SHADOW_MODE_DENYLIST: (none) → shop-beta" in out
    _, explained, _ = run(tmp_path, "flags", "explain", "--shopper", "shop-beta")
    assert "WHATSAPP_CANONICAL_SHADOW_MODE = false" in explained
    assert "WHATSAPP_ROUTING_ENABLED = true" in explained
    _, other, _ = run(tmp_path, "flags", "explain", "--shopper", "shop-1")
    assert "WHATSAPP_CANONICAL_SHADOW_MODE = true" in other
    assert "WHATSAPP_ROUTING_ENABLED = false" in other
    assert marked(run(tmp_path, "rollout", "plan")[1])[0].startswith("← Phase 2:")
    assert run(tmp_path, "rollout", "apply", "--phase", "2", "--allow", "shop-beta")[1].startswith(
        "already at Phase 2 for shop-beta: nothing changed"
    )

    code, out, _ = run(tmp_path, "rollout", "apply", "--phase", "3", "--percent", "25")
    assert code == 0
    assert "WHATSAPP_ROUTING_ENABLED_PERCENT: (none) → 25" in out
    assert "ALLOWLIST" not in out  # the beta's shoppers stay on
    assert marked(run(tmp_path, "rollout", "plan")[1])[0].startswith("← Phase 3 @ 25 %")
    code, out, _ = run(tmp_path, "rollout", "apply", "--phase", "3", "--percent", "100")
    assert "WHATSAPP_ROUTING_ENABLED_ALLOWLIST: shop-beta → (none)" in out
    assert "WHATSAPP_CANONICAL_SHADOW_MODE: true → false" in out
    assert marked(run(tmp_path, "rollout", "plan")[1])[0].startswith("← Phase 3 @ 100 %")
    code, out, _ = run(tmp_path, "rollout", "apply", "--phase", "0")
    assert code == 0
    assert marked(run(tmp_path, "rollout", "plan")[1])[0].startswith("← Phase 0:")
    _, rows, _ = run(tmp_path, "flags", "list", "--overrides")
    assert "PERCENT" not in rows
    assert "ALLOWLIST" not in rows


def test_a_global_rollback_beats_a_shoppers_override_and_resume_restores_both(
    tmp_path: Path,
) -> None:
    prepare(tmp_path)
    assert run(tmp_path, "rollout", "apply", "--phase", "3", "--percent", "100")[0] == 0
    assert (
        run(tmp_path, "flags", "set", "WHATSAPP_ROUTING_ENABLED", "true", "--shopper", "vip")[0]
        == 0
    )

    code, out, _ = run(tmp_path, "rollback")
    assert code == 0
    assert "WHATSAPP_CANONICAL_EVENTS_ENABLED: true → false" in out
    assert "and for vip, whose own overrides would have beaten it" in out
    _, vip, _ = run(tmp_path, "flags", "explain", "--shopper", "vip")
    assert "WHATSAPP_ROUTING_ENABLED = false" in vip
    assert "WHATSAPP_CANONICAL_EVENTS_ENABLED = false" in vip
    code, out, _ = run(tmp_path, "rollback")  # twice: still off, the first record kept
    assert code == 0
    assert "already rolled back" in out
    assert "WHATSAPP_CANONICAL_EVENTS_ENABLED: false (unchanged)" in out  # not "false → false"
    assert "→" not in out

    code, out, err = run(tmp_path, "rollout", "resume")
    assert code == 0, err
    assert "WHATSAPP_CANONICAL_EVENTS_ENABLED: false → true" in out
    assert "0 webhook(s) replayed" in out
    _, rows, _ = run(tmp_path, "flags", "list", "--overrides")
    assert "WHATSAPP_ROUTING_ENABLED = true for shopper vip" in rows
    assert "WHATSAPP_CANONICAL_EVENTS_ENABLED = " not in rows  # ours removed, not pinned
    code, _, err = run(tmp_path, "rollout", "resume")
    assert code == 1
    assert "no rollback in force" in err


def test_a_shoppers_rollback_leaves_the_others_alone(tmp_path: Path) -> None:
    prepare(tmp_path)
    assert run(tmp_path, "rollout", "apply", "--phase", "3", "--percent", "100")[0] == 0
    code, out, _ = run(tmp_path, "rollback", "--shopper", "shop-7")
    assert code == 0
    assert "rolled back shopper shop-7" in out
    assert "wacanon rollout resume --shopper shop-7" in out
    _, seven, _ = run(tmp_path, "flags", "explain", "--shopper", "shop-7")
    _, one, _ = run(tmp_path, "flags", "explain", "--shopper", "shop-1")
    assert "WHATSAPP_CANONICAL_EVENTS_ENABLED = false" in seven
    assert "WHATSAPP_CANONICAL_EVENTS_ENABLED = true" in one
    assert run(tmp_path, "rollout", "resume", "--shopper", "shop-1")[0] == 1
    code, out, _ = run(tmp_path, "rollout", "resume", "--shopper", "shop-7")
    assert code == 0
    assert "resumed shopper shop-7" in out
    _, rows, _ = run(tmp_path, "flags", "list", "--overrides")
    assert "shop-7" not in rows
