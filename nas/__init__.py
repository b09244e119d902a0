"""EFTNAS for BERT-style encoders (Munoz et al., LREC-COLING 2024): importance, search space
generation, weight reordering, super-network and search. NNCF is imported only inside this package
(``nas.movement`` and ``nas.supernet``, inside their functions).

- ``nas.movement``: movement-sparsity importance through NNCF 2.19, reduced to heads and neurons;
- ``nas.search_space``: the search-space generator (MACs targets, binary-searched thresholds);
- ``nas.reorder``: importance-ordered weight reordering;
- ``nas.supernet``: the super-network on NNCF BootstrapNAS elastic width, trained with the sandwich
  rule and distillation;
- ``nas.search``: NSGA-II over a search space (pymoo);
- ``nas.records``: a subnetwork's configuration, a Pareto-front point and a run summary (shared with ``explorer``);
- ``nas.extract`` / ``nas.export``: subnetworks as standalone Hugging Face models, and as ONNX.

The product around them (data, fine-tuning, the run folder, the tab) is ``explorer.pipelines.eftnas`` (the tab: ``explorer.backend.eftnas``).
"""

from .extract import extract_subnetwork, subnetwork_plan
from .reorder import reorder_by_importance
from .records import FrontPoint, RunSummary, SubnetworkConfig
from .search import nsga2_search, pareto_front
from .search_space import SearchSpace, encoder_macs, generate_search_space, widths_at_threshold

__all__ = ["FrontPoint", "RunSummary", "SearchSpace", "SubnetworkConfig", "encoder_macs", "extract_subnetwork", "generate_search_space", "nsga2_search",
           "pareto_front", "reorder_by_importance", "subnetwork_plan", "widths_at_threshold"]
