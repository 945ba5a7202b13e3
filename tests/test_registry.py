"""The registry and the config name the same parts, and bad names say what is valid."""

import pytest

from tfvae import config, registry
from tfvae.data_checks import SUPPORTS as CHECKED_SUPPORTS
from tfvae.parts import SUPPORTS


def test_config_choices_and_registry_agree():
    assert tuple(registry.LIKELIHOODS) == config.LIKELIHOODS
    assert tuple(registry.POSTERIORS) == config.POSTERIORS
    assert tuple(registry.PRIORS) == config.PRIORS
    assert set(CHECKED_SUPPORTS) == set(SUPPORTS)


def test_registered_options_are_config_fields():
    for kind, entries in registry.KINDS.items():
        fields = {f for f in config.SECTIONS[kind].__dataclass_fields__}
        for name, entry in entries.items():
            assert set(entry.options) <= fields, (kind, name)


def test_every_likelihood_declares_a_checked_support():
    for entry in registry.LIKELIHOODS.values():
        assert entry.cls.support in CHECKED_SUPPORTS


@pytest.mark.parametrize("kind", list(registry.KINDS))
def test_an_unknown_name_lists_the_valid_ones(kind):
    with pytest.raises(ValueError) as error:
        registry.entry(kind, "nope")
    for name in registry.KINDS[kind]:
        assert name in str(error.value)


def test_an_unknown_kind_lists_the_kinds():
    with pytest.raises(ValueError, match="likelihood"):
        registry.entry("decoder", "bernoulli")


def test_an_option_for_another_part_is_refused():
    with pytest.raises(ValueError, match="num_flows applies only to iaf or affine_coupling"):
        config.PosteriorConfig("laplace", num_flows=3)
    with pytest.raises(ValueError, match="num_pseudo_inputs applies only to vamp"):
        config.PriorConfig("mixture_of_gaussians", num_pseudo_inputs=3)
    with pytest.raises(ValueError, match="fixed_scale applies only"):
        config.LikelihoodConfig("gaussian", fixed_scale=0.1)


def test_an_analytic_kl_is_refused_where_tfp_has_none():
    config.ModelConfig(kl_estimator="analytic")  # Diagonal Gaussian to N(0, I): closed form.
    for posterior, prior in (("iaf", "standard_normal"), ("diagonal_gaussian", "vamp")):
        with pytest.raises(ValueError, match="--kl-estimator auto"):
            config.ModelConfig(kl_estimator="analytic", posterior=posterior, prior=prior)
