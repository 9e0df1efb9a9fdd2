"""hydra/sweeper=triad (conf/hydra/sweeper/triad.yaml), triad's default sweeper: Hydra's
basic grid sweeper, plus seeds_together and compare.until_decided (src/sweeper.py).

Hydra instantiates only sweepers under the `hydra_plugins` namespace package (no
__init__.py there), and imports this module at every start while it looks for
plugins: it imports nothing of triad until a sweep starts.
"""

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from omegaconf import OmegaConf


class TriadSweeper(BasicSweeper):
    """The basic sweeper's grid; with seeds_together, a swept seed folded into `seeds=[...]`;
    with compare.until_decided, seeds added in rounds to the choices still undecided."""

    def split_arguments(self, overrides, max_batch_size):
        # BasicSweeper.sweep calls it through self; a static method there, it needs the config here.
        from src.sweeper import folded

        return BasicSweeper.split_arguments(folded(overrides, self.config), max_batch_size)

    def sweep(self, arguments):
        if not OmegaConf.select(self.config, "compare.until_decided", default=False):
            return super().sweep(arguments)
        from src.sweeper import until_decided

        return until_decided(self, arguments)
