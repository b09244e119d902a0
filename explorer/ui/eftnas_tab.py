"""EFTNAS tab: train (or open) a super-network, pick a MACs or latency budget, extract the best
subnetwork for it at once, try it next to the dense model, and add it to the Pareto front."""

from __future__ import annotations

import threading

import gradio as gr

from explorer.backend import eftnas
from explorer.ui.errors import shown_to_user

INTRO = ("**EFTNAS** ([Munoz et al., LREC-COLING 2024](https://aclanthology.org/2024.lrec-main.497/)) for BERT-style "
         "classifiers: movement-sparsity importance (NNCF) generates a search space of per-layer widths, weights are "
         "reordered by importance, a weight-sharing super-network is trained (NNCF BootstrapNAS elastic width, sandwich "
         "rule, distillation from the dense model) and NSGA-II searches it for the Pareto front of accuracy against "
         "MACs. Choose a budget and the best subnetwork on the front is cut out of the super-network as a plain, "
         "smaller Hugging Face model, in well under a second. Reference runs show their results but ship no weights; "
         "train a super-network here (minutes on a CPU with the defaults) or with `python -m explorer eftnas`.")
CLASSIFICATION = eftnas.CLASSIFICATION_TASKS


def _runs(root):
    return eftnas.list_eftnas_runs(root)


def open_run(label, root):
    """(summary state, front figure, search-space figure, importance figure, slider, note) of a run."""
    if not label:
        return None, None, None, None, gr.Slider(), "Train a super-network or pick a run."
    with shown_to_user():
        run = eftnas.open_run(label, root)
    return ({"folder": run["folder"], "summary": run["summary"]}, run["front_figure"], run["space_figure"],
            run["importance_figure"], gr.Slider(value=50), run["note"])


def pick(state, budget, value):
    """(chosen point state, front figure, description) for the budget."""
    if not state:
        raise gr.Error("Open a run first.")
    with shown_to_user():
        return eftnas.choose_subnetwork(state["summary"], budget, value)


def _chosen(state, point) -> None:
    if not state or not point:
        raise gr.Error("Open a run and choose a budget first.")


def add(state, point, root):
    _chosen(state, point)
    with shown_to_user():
        folder = eftnas.add_to_pareto(state["folder"], point, root)
    return f"Added **{folder.name}** to the Pareto front (see the Pareto tab)."


def classify(state, point, text):
    _chosen(state, point)
    with shown_to_user():
        rows = eftnas.classify_side_by_side(state["folder"], point, text)
    return [list(r) for r in rows]


def render(runs: str | None, shared: str | None) -> dict:
    """Widgets and wiring of the tab (inside an open gr.Blocks)."""
    root = gr.State(runs)
    state, point = gr.State(None), gr.State(None)
    gr.Markdown(INTRO)
    with gr.Accordion("Train a super-network (long job)", open=False):
        with gr.Row():
            model = gr.Dropdown(["minilm"], value="minilm", allow_custom_value=True,
                                label="Model (minilm: real MiniLM-L6 weights, offline)")
            task = gr.Dropdown(CLASSIFICATION, value="rotten_tomatoes", label="Task")
            device = gr.Radio(["auto", "cpu", "cuda"], value="auto", label="Device")
        with gr.Row():
            train_samples = gr.Number(2000, precision=0, label="Training examples")
            finetune_steps = gr.Number(300, precision=0, label="Dense fine-tune steps")
            movement_steps = gr.Number(200, precision=0, label="Movement-sparsity steps")
            supernet_steps = gr.Number(300, precision=0, label="Super-network steps (3 subnetworks each)")
        with gr.Row():
            train = gr.Button("Train super-network", variant="primary")
            stop = gr.Button("Cancel")
        trained_note = gr.Markdown()
    with gr.Row():
        run = gr.Dropdown(list(_runs(runs)), label="EFTNAS run", elem_id="eftnas-run")
        reload = gr.Button("Refresh")
    note = gr.Markdown()
    with gr.Row():
        budget = gr.Radio([("% of dense MACs", "macs"), ("latency (ms)", "latency")], value="macs", label="Budget")
        value = gr.Slider(1, 100, value=50, step=0.5, label="Budget value", elem_id="eftnas-budget")
        extract = gr.Button("Choose the best subnetwork for the budget", variant="primary")
    chosen = gr.Markdown(elem_id="eftnas-chosen")
    front = gr.Plot(label="Pareto front", elem_id="eftnas-front")
    with gr.Row():
        text = gr.Textbox(label="Classify a sentence with the dense model and the subnetwork (a pair: first ||| second)",
                          lines=2)
        go = gr.Button("Classify")
    table = gr.Dataframe(headers=["model", "label", "probability"], interactive=False)
    add_button = gr.Button("Add the subnetwork to the Pareto front")
    added = gr.Markdown()
    with gr.Row():
        space_plot = gr.Plot(label="Search space")
        importance_plot = gr.Plot(label="Importance")

    cancel = threading.Event()

    def do_train(model_, task_, device_, n, ft, mv, sn, root_, progress=gr.Progress()):
        cancel.clear()
        with shown_to_user():
            out, summary = eftnas.train(model_, task_, device=device_, train_samples=int(n) or None,
                                        finetune_steps=int(ft), movement_steps=int(mv), supernet_steps=int(sn),
                                        data_dir=shared, root=root_, progress=lambda f, m: progress(f, desc=m),
                                        cancel=cancel)
        return (f"Trained in {summary.wall_s / 60:.1f} min: {len(summary.front)} subnetworks on the front.",
                gr.Dropdown(choices=list(_runs(root_)), value=out.name))

    def refresh(root_):
        choices = list(_runs(root_))
        return gr.Dropdown(choices=choices, value=choices[0] if choices else None)

    def budget_range(state_, kind):
        if not state_:
            return gr.Slider()
        front_ = state_["summary"].front
        if kind == "macs":
            return gr.Slider(minimum=1, maximum=100, value=50, step=0.5, label="Budget: % of dense MACs")
        top = max(p.latency_ms for p in front_) * 1.05
        return gr.Slider(minimum=0, maximum=round(top, 1), value=round(top / 2, 1), step=0.1,
                         label="Budget: latency in ms (as measured when the run was made)")

    train.click(do_train, [model, task, device, train_samples, finetune_steps, movement_steps, supernet_steps, root],
                [trained_note, run], concurrency_limit=1, api_name="eftnas_train")
    stop.click(lambda: cancel.set(), None, None, api_name=False)
    reload.click(refresh, root, run, api_name=False)
    run.change(open_run, [run, root], [state, front, space_plot, importance_plot, value, note], api_name="eftnas_open")
    budget.change(budget_range, [state, budget], value, api_name=False)
    extract.click(pick, [state, budget, value], [point, front, chosen], api_name="eftnas_extract")
    go.click(classify, [state, point, text], table, api_name="eftnas_classify")
    add_button.click(add, [state, point, root], added, api_name="eftnas_add")
    return {"open": (open_run, [run, root], [state, front, space_plot, importance_plot, value, note]),
            "refresh": (refresh, [root], [run])}
