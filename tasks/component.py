"""The one interface between deploy.py (and the data checks, the tests, the benchmark) and
the components: what a component needs, opens and installs, with a default for each.

A component is a task module (tasks/<name>.py) and the condition, read from data, under
which a host runs it. The module defines what it has, and nothing else:

    DEFAULTS                      its settings and their defaults
    PACKAGES or packages(data)    Debian packages
    UNITS or units(data)          systemd units kept enabled and running, each with the
                                  action ("reload", "restart", "") when an input changed
    PORTS or ports(data)          ports opened to everyone ("tcp/25")
    sources(data)                 (network, port) opened to some networks only
    paths(data)                   paths the run reads besides the component's files
    gone(data)                    paths the run reads that a host deployed since should not
                                  have (what a component retires: once gone, nothing to do)
    heads(data)                   files whose first lines the run needs (keys, serials)
    KEEPS or keeps(data)          paths (shell patterns) of the keys it makes on the host,
                                  which must survive a rebuild (tasks/keys.py)
    files(data, system)           its config files (tasks.util.ConfigFile), from data only
    apply(data, configs, state)   its pyinfra @deploy: install, then act on what changed

Unit actions and ports name what the component serves; the firewall opens the ports of
every component a host runs (tasks/registry.py).
"""

from collections.abc import Callable
from types import ModuleType


def always(data: dict) -> bool:
    return True


class Component:
    def __init__(self, module: ModuleType, when: Callable[[dict], bool] = always):
        self.module = module
        self.when = when
        self.name = module.__name__.rsplit(".", 1)[-1]

    def __repr__(self) -> str:
        return f"Component({self.name})"

    def _get(self, name: str, default, *args):
        """The module's function `name` called with args, else its constant NAME, else default."""
        if callable(found := getattr(self.module, name, None)):
            return found(*args)
        return getattr(self.module, name.upper(), default)

    def on(self, data: dict) -> bool:
        return self.when(data)

    @property
    def defaults(self) -> dict:
        return getattr(self.module, "DEFAULTS", {})

    def packages(self, data: dict) -> list[str]:
        return list(self._get("packages", [], data))

    def units(self, data: dict) -> dict[str, str]:
        return dict(self._get("units", {}, data))

    def ports(self, data: dict) -> list[str]:
        return list(self._get("ports", [], data))

    def sources(self, data: dict) -> list[tuple[str, str]]:
        return list(self._get("sources", [], data))

    def paths(self, data: dict) -> list[str]:
        return list(self._get("paths", [], data))

    def gone(self, data: dict) -> list[str]:
        return list(self._get("gone", [], data))

    def heads(self, data: dict) -> list[str]:
        return list(self._get("heads", [], data))

    def keeps(self, data: dict) -> list[str]:
        return list(self._get("keeps", [], data))

    def files(self, data: dict, system: dict, others: list["Component"]) -> list:
        """Config files; `others`: the other components this host runs."""
        files = getattr(self.module, "files", None)
        return files(data, system) if files else []

    def apply(self, data: dict, configs: list, state: dict) -> None:
        self.module.apply(data, configs, state)
