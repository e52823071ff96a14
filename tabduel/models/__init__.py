"""Model families: each module fits, saves, loads and predicts one family; the registry says which there are."""
