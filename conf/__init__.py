"""mmembed's Hydra configs (installed as ``mmembed.conf``; ``mmembed/conf`` links here).

Importing the package registers the structured configs the YAML files build on: the tasks'
decoding settings (``task/decoding/{speech,caption}``), whose fields and single defaults are
the dataclasses in :mod:`mmembed.models.decoding.options`. Hydra imports it whenever it
composes these configs (``@hydra.main(config_path="pkg://mmembed.conf")`` or
``initialize_config_module("mmembed.conf")``). It also registers the
``${mmembed.run_id:<default>}`` resolver that names run folders (:mod:`mmembed.cluster.run_id`).
"""

from hydra.core.config_store import ConfigStore

from mmembed.cluster.run_id import register_resolver
from mmembed.models.decoding.options import CaptionDecoding, SpeechDecoding

register_resolver()

_store = ConfigStore.instance()
_store.store(group="task/decoding", name="speech", node=SpeechDecoding)
_store.store(group="task/decoding", name="caption", node=CaptionDecoding)
