"""The uninstall plan (pure): built from plain inputs, no filesystem."""

from __future__ import annotations

import pytest

from nodecfg.containerd.versions import ContainerdVersion
from nodecfg.plan import Action, ChangeClass, CurrentFile, sha256
from nodecfg.plan.uninstall import UninstallError, UninstallInputs, make_uninstall_plan
from nodecfg.render.config_edit import edit_containerd_config
from nodecfg.render.etc_hosts import BEGIN, END
from nodecfg.render.files import FileKind
from tests.conftest import DEBIAN_CONFIG

CONFIG = "/etc/containerd/config.toml"
ETC_HOSTS = "/etc/hosts"
HOSTS_DIR = "/etc/containerd/certs.d"
HOSTS_TOML = f"{HOSTS_DIR}/docker.io/hosts.toml"
CA = f"{HOSTS_DIR}/docker.io/ca.crt"
TARGET = ContainerdVersion.parse("1.7.24")
OURS = b'server = "https://registry-1.docker.io"\n[host."https://mirror.example"]\n'
THEIRS = b'server = "https://registry-1.docker.io"\n[host."https://their-mirror.example"]\n'


def inputs(
    *,
    owned: dict[str, str] | None = None,
    originals: dict[str, CurrentFile] | None = None,
    current: dict[str, CurrentFile] | None = None,
    edited: dict[str, str] | None = None,
    target: ContainerdVersion | None = TARGET,
    force_original: bool = False,
) -> UninstallInputs:
    return UninstallInputs(
        owned=owned or {},
        originals=originals or {},
        current=current or {},
        edited=edited or {},
        auth_hosts=frozenset(),
        moved_legacy=False,
        config_path=CONFIG,
        etc_hosts_path=ETC_HOSTS,
        target=target,
        force_original=force_original,
    )


def edited_config(original: str) -> str:
    """config.toml as apply leaves it: config_path set in the CRI registry table."""
    return edit_containerd_config(
        original, where=CONFIG, hosts_dir=HOSTS_DIR, auths={}, owned_auth_hosts=frozenset(), target=TARGET
    ).text


def test_nothing_recorded_nothing_to_do() -> None:
    plan, notes = make_uninstall_plan(inputs(current={CONFIG: CurrentFile(DEBIAN_CONFIG.encode(), 0o644)}))
    assert plan.operations == () and notes == ()


def test_a_file_nodecfg_created_is_deleted() -> None:
    plan, notes = make_uninstall_plan(inputs(owned={HOSTS_TOML: sha256(OURS)}, current={HOSTS_TOML: CurrentFile(OURS, 0o644)}))
    assert [(op.action, op.path, op.change_class) for op in plan.operations] == [(Action.DELETE, HOSTS_TOML, ChangeClass.HOT)]
    assert notes == ()


def test_an_owned_file_the_user_changed_is_deleted_with_a_note() -> None:
    plan, notes = make_uninstall_plan(inputs(owned={HOSTS_TOML: sha256(OURS)}, current={HOSTS_TOML: CurrentFile(b"# mine\n")}))
    assert [op.action for op in plan.operations] == [Action.DELETE]
    assert notes == (f"{HOSTS_TOML} was changed after nodecfg wrote it; removed anyway (nodecfg owns it)",)


def test_the_foreign_file_nodecfg_replaced_comes_back_with_its_mode() -> None:
    plan, notes = make_uninstall_plan(
        inputs(
            owned={HOSTS_TOML: sha256(OURS)},
            originals={HOSTS_TOML: CurrentFile(THEIRS, 0o640)},
            current={HOSTS_TOML: CurrentFile(OURS, 0o644)},
        )
    )
    (op,) = plan.operations
    assert (op.action, op.path, op.content, op.mode, op.kind) == (Action.WRITE, HOSTS_TOML, THEIRS, 0o640, FileKind.HOSTS)
    assert notes == ()


def test_an_original_already_in_place_is_left_alone() -> None:
    plan, _ = make_uninstall_plan(
        inputs(originals={HOSTS_TOML: CurrentFile(THEIRS, 0o644)}, current={HOSTS_TOML: CurrentFile(THEIRS, 0o644)})
    )
    assert plan.operations == ()


def test_deletes_go_before_writes_and_config_toml_last() -> None:
    original = DEBIAN_CONFIG.encode()
    ours = edited_config(DEBIAN_CONFIG).encode()
    plan, _ = make_uninstall_plan(
        inputs(
            owned={HOSTS_TOML: sha256(OURS), CA: sha256(b"pem")},
            originals={HOSTS_TOML: CurrentFile(THEIRS, 0o644), CONFIG: CurrentFile(original, 0o644)},
            current={HOSTS_TOML: CurrentFile(OURS), CA: CurrentFile(b"pem"), CONFIG: CurrentFile(ours, 0o600)},
            edited={CONFIG: sha256(ours)},
        )
    )
    assert [(op.action, op.path) for op in plan.operations] == [
        (Action.DELETE, CA),
        (Action.WRITE, HOSTS_TOML),
        (Action.WRITE, CONFIG),
    ]
    assert plan.restart_required


def test_an_untouched_config_toml_gets_its_original_back_byte_for_byte() -> None:
    original = DEBIAN_CONFIG.encode()
    ours = edited_config(DEBIAN_CONFIG).encode()
    plan, notes = make_uninstall_plan(
        inputs(
            originals={CONFIG: CurrentFile(original, 0o644)},
            current={CONFIG: CurrentFile(ours, 0o600)},
            edited={CONFIG: sha256(ours)},
        )
    )
    (op,) = plan.operations
    assert (op.action, op.content, op.mode, op.change_class) == (Action.WRITE, original, 0o644, ChangeClass.COLD)
    assert notes == ()


def test_a_config_toml_the_user_edited_since_loses_only_nodecfgs_edits() -> None:
    ours = edited_config(DEBIAN_CONFIG) + "# tuned by hand\n"
    plan, notes = make_uninstall_plan(
        inputs(
            originals={CONFIG: CurrentFile(DEBIAN_CONFIG.encode(), 0o644)},
            current={CONFIG: CurrentFile(ours.encode(), 0o600)},
            edited={CONFIG: sha256(edited_config(DEBIAN_CONFIG).encode())},
        )
    )
    (op,) = plan.operations
    assert op.content == (DEBIAN_CONFIG + "# tuned by hand\n").encode() and op.mode == 0o644
    assert notes == (f"{CONFIG} was changed after nodecfg's last write: only nodecfg's edits are taken out",)


def test_force_original_restores_an_edited_config_toml_as_it_was() -> None:
    plan, notes = make_uninstall_plan(
        inputs(
            originals={CONFIG: CurrentFile(DEBIAN_CONFIG.encode(), 0o644)},
            current={CONFIG: CurrentFile(b"not = [toml", 0o600)},
            force_original=True,
        )
    )
    (op,) = plan.operations
    assert op.content == DEBIAN_CONFIG.encode() and notes == ()


def test_a_config_toml_nodecfg_created_is_deleted() -> None:
    ours = edited_config("").encode()
    plan, _ = make_uninstall_plan(
        inputs(originals={CONFIG: CurrentFile(None)}, current={CONFIG: CurrentFile(ours, 0o600)}, edited={CONFIG: sha256(ours)})
    )
    assert [(op.action, op.path, op.kind) for op in plan.operations] == [(Action.DELETE, CONFIG, FileKind.CONTAINERD_CONFIG)]


def test_an_unreadable_edited_config_toml_is_refused() -> None:
    with pytest.raises(UninstallError, match=r"--force-original restores the original file as it was"):
        make_uninstall_plan(
            inputs(originals={CONFIG: CurrentFile(DEBIAN_CONFIG.encode(), 0o644)}, current={CONFIG: CurrentFile(b"not = [toml")})
        )


def test_the_etc_hosts_block_is_stripped_and_the_rest_kept() -> None:
    text = f"127.0.0.1\tlocalhost\n{BEGIN}\n10.0.0.5\tmirror.example\n{END}\n::1\tlocalhost\n"
    plan, _ = make_uninstall_plan(inputs(current={ETC_HOSTS: CurrentFile(text.encode(), 0o644)}))
    (op,) = plan.operations
    assert (op.action, op.path, op.kind, op.mode) == (Action.WRITE, ETC_HOSTS, FileKind.ETC_HOSTS, 0o644)
    assert op.content == b"127.0.0.1\tlocalhost\n::1\tlocalhost\n"


def test_an_etc_hosts_without_a_block_is_not_touched() -> None:
    plan, _ = make_uninstall_plan(inputs(current={ETC_HOSTS: CurrentFile(b"127.0.0.1\tlocalhost\n")}))
    assert plan.operations == ()


def test_damaged_etc_hosts_markers_are_refused() -> None:
    with pytest.raises(UninstallError, match=r"^/etc/hosts: .*markers are damaged"):
        make_uninstall_plan(inputs(current={ETC_HOSTS: CurrentFile(f"{BEGIN}\n10.0.0.5\tx\n".encode())}))


def test_taking_edits_out_without_a_known_release_is_refused_by_name() -> None:
    """The edits live in a table that depends on the release: with none known, uninstall says so instead of guessing."""
    ours = edited_config(DEBIAN_CONFIG) + "# tuned by hand\n"
    with pytest.raises(UninstallError, match=r"config.toml: the containerd release is needed"):
        make_uninstall_plan(
            inputs(
                originals={CONFIG: CurrentFile(DEBIAN_CONFIG.encode(), 0o644)},
                current={CONFIG: CurrentFile(ours.encode(), 0o600)},
                edited={CONFIG: sha256(edited_config(DEBIAN_CONFIG).encode())},
                target=None,
            )
        )


def test_a_config_toml_whose_bytes_are_back_changes_only_its_mode_and_needs_no_restart() -> None:
    """After a daemon rollback config.toml holds the original bytes, still 0600: putting the mode
    back is no reason to restart containerd, which reads the bytes only."""
    original = DEBIAN_CONFIG.encode()
    plan, _notes = make_uninstall_plan(
        inputs(
            originals={CONFIG: CurrentFile(original, 0o644)},
            current={CONFIG: CurrentFile(original, 0o600)},
            edited={CONFIG: sha256(original)},
        )
    )
    (op,) = plan.operations
    assert (op.action, op.content, op.mode, op.change_class) == (Action.WRITE, original, 0o644, ChangeClass.HOT)
    assert not plan.restart_required
