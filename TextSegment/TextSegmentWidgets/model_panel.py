"""Model section: catalog list, download with progress and cancel, import, update check, device hint.

Nothing here imports torch: the device hint reads it only once the worker has loaded it (opening the module must not
freeze Slicer for the seconds a torch import takes).
"""

import logging
import os
import sys
from typing import Any, Callable

import qt
import slicer

from TextSegmentLib.prompts import known_names


class ModelPanel:
    """Model management. ``ui``: the module's widgets; ``logic``: the module's logic; ``parameters()``: the
    parameter node; ``start(job, onDone, dialogTitle)``: runs a job with progress; ``modelChanged()``: called after
    another model was chosen (the widget prepares the volume again); ``completions(names)``: sets the prompt
    completion."""

    def __init__(
        self,
        ui: Any,
        logic: Any,
        parameters: Callable[[], Any],
        start: Callable[..., None],
        modelChanged: Callable[[], None],
        completions: Callable[[list], None],
    ) -> None:
        self.ui, self.logic, self.parameters, self.start = ui, logic, parameters, start
        self.modelChanged, self.completions = modelChanged, completions

    def populate(self) -> None:
        combo = self.ui.modelComboBox
        combo.blockSignals(True)
        combo.clear()
        try:
            from TextSegmentLib.catalog import list_models

            models = [m for m in list_models() if m.offered]  # usable now or a current version to download
            for m in models:
                state = "installed" if m.installed else f"{(m.size or 0) / 1e6:.0f} MB download"
                combo.addItem(f"{m.id}{' (default)' if m.default else ''} - {state}", m.id)
        except Exception as exc:
            logging.warning(f"TextSegment: the model catalog cannot be read: {exc}")
        combo.addItem("default (catalog default)", "default")
        p = self.parameters()
        wanted = p.model if p else "default"
        combo.setCurrentIndex(max(0, combo.findData(wanted)))
        combo.blockSignals(False)

    def onModelChanged(self, index: int) -> None:
        model = self.ui.modelComboBox.itemData(index) or "default"
        p = self.parameters()
        if p:
            p.model = model
        self.completions(known_names() + self.vocabulary(model))
        if p:  # the new model's embeddings, in the background
            self.modelChanged()

    def vocabulary(self, model: str) -> list:
        """Structure names of a catalog model (no model loading): used for prompt completion."""
        try:
            from TextSegmentLib.catalog import load_catalog

            catalog = load_catalog()
            entry = catalog.get(catalog.default_id() if model == "default" else model)
            return list(entry.structures) if entry is not None else []
        except Exception:  # a missing or broken catalog only costs the completion
            return []

    def configureLogic(self) -> None:
        self.logic.model = self.parameters().model or "default"
        self.logic.device = self.parameters().device

    def modelStatus(self):
        """The catalog's entry for the chosen model (None: not a catalog id, e.g. a bundle folder)."""
        from TextSegmentLib.catalog import list_models

        return {m.id: m for m in list_models()}.get(self.parameters().model or "default")

    def modelInstalled(self) -> bool:
        status = self.modelStatus()
        return status is None or status.installed

    def ensureModel(self, thenCall) -> bool:
        """True when the chosen model is usable now; else offer to download it (then call ``thenCall``)."""
        model = self.logic.model
        status = self.modelStatus()
        if status is None or status.installed:
            return True
        if slicer.util.confirmOkCancelDisplay(f"Download the model {model} ({(status.size or 0) / 1e6:.0f} MB)?"):
            self.download(model, thenCall)
        return False

    def download(self, model: str, thenCall=None) -> None:
        from TextSegmentLib.app import resolve_bundle  # the one place where a model id becomes a bundle folder

        def run(job):
            return resolve_bundle(model, progress=job.report, cancel=job.cancelled)

        def done(path):
            self.populate()
            if thenCall is not None:
                thenCall()

        self.start(self.logic.worker.submit(run, description=f"downloading {model}"), done, f"Downloading {model}...")

    def onDownload(self) -> None:
        model = self.ui.modelComboBox.currentData
        if model and model != "default":
            self.download(model)

    def onImport(self) -> None:
        from TextSegmentLib.catalog import import_model

        path = qt.QFileDialog.getOpenFileName(
            None, "Import a TextSegment model", "", "Model archives (*.zip *.tar.gz);;Model card (model.json)"
        )
        if path:
            path = os.path.dirname(path) if path.endswith("model.json") else path
            with slicer.util.tryWithErrorDisplay("The model could not be imported.", waitCursor=True):
                folder = import_model(path)
                self.populate()
                slicer.util.infoDisplay(f"Installed {os.path.basename(str(folder))}")

    def onCheckUpdates(self) -> None:
        with slicer.util.tryWithErrorDisplay("Could not check for updates.", waitCursor=True):
            from TextSegmentLib.catalog import list_models, load_catalog

            catalog, models = load_catalog(), list_models()
            installed = {m.id for m in models if m.installed}
            newer = []
            for name in catalog.names():
                newest = catalog.newest(name)
                if newest and newest.id not in installed and any(i.startswith(name + "-v") for i in installed):
                    newer.append(newest.id)
            text = ("Newer versions: " + ", ".join(newer) + ". Select one and press Download.") if newer else None
            slicer.util.infoDisplay(text or "The installed models are the newest in the catalog.")

    def updateDeviceHint(self, *args) -> None:
        """A hint about the chosen device; it needs torch, which is read only once the worker has imported it."""
        torch = sys.modules.get("torch")
        hint = ""
        device = self.ui.deviceComboBox.currentText
        if torch is None:
            hint = ""
        elif device in ("auto", "cuda"):
            if torch.cuda.is_available():
                gb = torch.cuda.get_device_properties(0).total_memory / 2**30
                if gb < 4:
                    hint = f"The GPU has {gb:.1f} GB; large volumes may fall back to the CPU (slower)."
            elif device == "cuda":
                hint = "No CUDA GPU was found; use auto or cpu."
        elif device == "mps" and not torch.backends.mps.is_available():
            hint = "Apple MPS is not available here; use auto or cpu."
        self.ui.deviceHintLabel.text = hint
