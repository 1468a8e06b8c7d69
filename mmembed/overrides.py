"""Command-line overrides that Hydra applies differently from what they say.

``key={}`` on a dict node is merged into the default by Hydra, which keeps every entry (so
``data.extra_test_files={}`` kept the default ``test_unseen`` set). Nobody writes an empty dict
to change nothing, so the app applies such an override as a replacement: the dict becomes
empty. ``key=null`` does the same where the component accepts None.
"""

from __future__ import annotations

from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, OmegaConf


def apply_empty_dict_overrides(cfg: DictConfig) -> list[str]:
    """Empty every dict node of ``cfg`` that a ``key={}`` command-line override names; returns
    the keys emptied. Outside a Hydra run (no overrides known) it does nothing."""
    if not HydraConfig.initialized():
        return []
    overrides = OverridesParser.create().parse_overrides(list(HydraConfig.get().overrides.task))
    emptied = []
    for override in overrides:
        if override.is_delete() or override.package or override.value() != {}:
            continue
        key = override.key_or_group
        node = OmegaConf.select(cfg, key, throw_on_missing=False)
        if isinstance(node, DictConfig) and len(node):
            OmegaConf.update(cfg, key, {}, merge=False)
            emptied.append(key)
    return emptied
