"""The training method: :class:`~sracl_lightning.methods.module.SRACLModule`, one LightningModule composed of a
recommendation loss and weighted objectives, and the parts those are made of (losses, synthesizer, substitution,
neighbour sources, view generators). Only ``module.py`` imports Lightning."""
