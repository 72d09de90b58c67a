"""Shared test settings (importable because pytest puts ``tests/`` on ``sys.path``)."""

#: a tiny, fast estimator configuration for contract tests (not for accuracy)
TINY = dict(latent_dim=3, rec_dim=6, units=12, n_layers=1, gru_units=12, encoder="gru",
            gradient="backprop", max_epochs=2, batch_size=8, verbose=0, random_state=0,
            device="cpu")
