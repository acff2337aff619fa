#!/usr/bin/env python3
"""The lab playing an operator's own site (lab/rehearse): their hosts and data on lab hosts.

    lab/site.py count INVENTORY                 how many lab hosts it takes (theirs, and one
                                                for the lab's internet)
    lab/site.py write INVENTORY GROUP_DATA      .lab/inventory.py for them (after lab.py up)
"""

import json
import shutil
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / ".lab"


def hosts(inventory: Path) -> list[str]:
    """Their inventory's hosts, read without its data check (it wants their secrets)."""
    sys.path.insert(0, str(REPO))
    from tasks.data import InventoryError, unchecked_groups

    try:
        found = unchecked_groups(inventory)
    except InventoryError as e:
        sys.exit(str(e))
    if not any(g == "mail" for groups, _ in found.values() for g, _ in groups):
        sys.exit(f"{inventory}: no host in the mail group: nothing to rehearse")
    return list(found)


def main() -> None:
    verb, inventory = sys.argv[1], Path(sys.argv[2]).resolve()
    if not inventory.is_file():
        sys.exit(f"lab/site.py: no inventory at {inventory}")
    if verb == "count":
        print(len(hosts(inventory)) + 1)
    elif verb == "write":
        group_data = Path(sys.argv[3]).resolve()
        if not (group_data / "all.py").is_file():
            sys.exit(f"lab/site.py: no all.py in {group_data}")
        hosts(inventory)
        (OUT / "site.json").write_text(json.dumps({"inventory": str(inventory), "group_data": str(group_data)},
                                                  indent=2))
        shutil.copyfile(REPO / "lab/site_inventory.py.in", OUT / "inventory.py")
    else:
        sys.exit(__doc__)


if __name__ == "__main__":
    main()
