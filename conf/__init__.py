"""mmembed's Hydra configs (installed as ``mmembed.conf``; ``mmembed/conf`` links here).

Importing the package registers the structured configs the YAML files build on: the tasks'
decoding settings (``task/decoding/{speech,caption}``), whose fields and single defaults are
the dataclasses in :mod:`mmembed.models.decoding.options`. Hydra imports it whenever it
composes these configs (``@hydra.main(config_path="pkg://mmembed.conf")`` or
``initialize_config_module("mmembed.conf")``).
"""

from hydra.core.config_store import ConfigStore

from mmembed.models.decoding.options import CaptionDecoding, SpeechDecoding

_store = ConfigStore.instance()
_store.store(group="task/decoding", name="speech", node=SpeechDecoding)
_store.store(group="task/decoding", name="caption", node=CaptionDecoding)
