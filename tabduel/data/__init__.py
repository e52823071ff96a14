"""The data a model sees: dataset specs, raw files read and checked, features, target transforms, numeric maps and
embeddings."""
