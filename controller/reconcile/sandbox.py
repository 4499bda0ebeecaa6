"""``fazai serve --sandbox``: the controller on the sandbox fleet, for trying it out.

It seeds a working copy of the example desired state (once; later commits are kept),
starts one real SSH node per Linux Node document and one OPNsense emulator per firewall
(as ``fazai demo`` does; the firewall is seeded with the drift an admin would have made
by hand), serves until SIGTERM/SIGINT, then tears the sandbox down. Root is needed for
the fleet's network namespaces.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import git

from controller.errors import FazaiError
from controller.model.state import DesiredState
from controller.pipeline import source as pipeline_source
from controller.reconcile import config as configuration
from controller.reconcile.config import ControllerConfig, Overrides
from controller.reconcile.gitsource import GitSource
from controller.source.open import default_cache_dir

WORKDIR = Path("/var/lib/fazai/sandbox")
AUTHOR = git.Actor("FazAI sandbox", "sandbox@fazai.invalid")


def default_config_text() -> bytes:
    return resources.files("controller.reconcile").joinpath("sandbox.fazai.yaml").read_bytes()


def load_config(
    path: Path | None, overrides: Overrides, workdir: Path = WORKDIR
) -> ControllerConfig:
    """The given config, or the sandbox's own (``sandbox.fazai.yaml`` beside this module).

    The working copy is seeded first either way: a copy of the sandbox's file (which
    watches it) must load on a first start too, and the loader checks ``watch``."""
    seed_working_copy(workdir / "infra")
    if path is not None:
        return configuration.load(path, overrides)
    return configuration.parse(default_config_text(), "sandbox.fazai.yaml", workdir, overrides)


def seed_working_copy(folder: Path, example: Path | None = None) -> bool:
    """A git working copy of the example desired state at ``folder``, committed on
    ``main``; False when it exists already (the user's commits are kept)."""
    if (folder / ".git").exists():
        return False
    from controller.testing.sandbox import example_state_dir

    source = example or example_state_dir()
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copytree(source, folder, dirs_exist_ok=True)
    repo = git.Repo.init(folder, initial_branch="main")
    repo.git.add("--all")
    repo.index.commit("The example desired state", author=AUTHOR, committer=AUTHOR)
    return True


def desired_state(config: ControllerConfig) -> DesiredState:
    """The first source's desired state at its head: what the sandbox must provide."""
    source = config.sources[0]
    repo = GitSource(source, config.cache_dir or default_cache_dir())
    return pipeline_source.load(repo.tree(repo.fetch()))


@contextlib.contextmanager
def running(config: ControllerConfig, workdir: Path = WORKDIR) -> Iterator[list[str]]:
    """Start the fleet and the firewalls the first source's Node documents describe;
    yields what was started, in words. Raises FazaiError when it cannot."""
    from controller.testing import sandbox
    from controller.testing.fleet import fleet_available

    reason = fleet_available()
    if reason is not None:
        raise FazaiError(f"cannot start the sandbox: {reason}")
    state = desired_state(config)
    try:
        fleet = sandbox.fleet_for(state, workdir)
    except ValueError as exc:
        raise FazaiError(str(exc)) from exc
    with contextlib.ExitStack() as stack:
        claim = stack.enter_context(sandbox.claimed(workdir))
        if fleet is not None:
            fleet.start()
            stack.callback(fleet.stop)
        try:
            emulators = stack.enter_context(sandbox.firewalls(state, claim))
        except ValueError as exc:
            raise FazaiError(str(exc)) from exc
        names = sorted(n for n, d in state.nodes.items() if d.spec["platform"] == "opnsense")
        for name, emulator in zip(names, emulators, strict=True):
            sandbox.seed_firewall(emulator, state, name)
        started = [f"{n.name}={n.address}" for n in (fleet.nodes.values() if fleet else [])]
        started += [
            f"{name}={emu.url} (OPNsense {emu.version} emulator)"
            for name, emu in zip(names, emulators, strict=True)
        ]
        yield started
