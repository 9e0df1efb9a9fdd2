"""Architectures: one plain nn.Module per file, sized by the DataSpec's dimensions."""
