"""Frozen configs: JSON round trips, generated flags, paper defaults, validation."""

import argparse
import dataclasses

import pytest

from tfvae import config, flags


def parse(*argv):
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser)
    return flags.from_arguments(parser.parse_args(list(argv)))


def test_json_round_trip_keeps_tuples():
    run = config.RunConfig(model=config.ModelConfig(hidden_units=(30, 20), event_shape=(28, 20)))
    again = config.RunConfig.from_json(run.to_json())
    assert again == run and isinstance(again.model.event_shape, tuple)


def test_configs_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.ModelConfig().latent_dim = 3


def test_flags_default_to_the_papers_setting_for_the_dataset():
    frey = parse("--dataset", "frey_face")
    assert frey.model.hidden_units == (200,) and frey.model.likelihood.name == "gaussian"
    mnist = parse("--dataset", "mnist")
    assert mnist.model.hidden_units == (500,) and mnist.model.likelihood.name == "bernoulli"
    assert mnist.data.binarization == "dynamic"
    assert mnist.data.batch_size == 100 and mnist.train.optimizer == "adagrad"


def test_flags_override_defaults():
    run = parse(
        "--dataset",
        "frey_face",
        "--latent-dim",
        "10",
        "--hidden-units",
        "64",
        "32",
        "--no-jit-compile",
        "--learning-rate",
        "0.1",
        "--run-name",
        "x",
    )
    assert run.model.latent_dim == 10 and run.model.hidden_units == (64, 32)
    assert run.train.jit_compile is False and run.train.learning_rate == 0.1
    assert run.train.run_name == "x"


def test_init_stddev_none_is_typed_as_none_and_round_trips():
    assert parse().model.init_stddev == 0.01  # the paper's, unless told
    assert parse("--init-stddev", "0.05").model.init_stddev == 0.05
    run = parse("--init-stddev", "none")
    assert run.model.init_stddev is None
    assert config.RunConfig.from_json(run.to_json()).model.init_stddev is None
    with pytest.raises(SystemExit):
        parse("--init-stddev", "wide")
    with pytest.raises(ValueError, match="init_stddev must be positive"):
        config.ModelConfig(init_stddev=0.0)


def test_every_field_but_event_shape_has_a_flag():
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser)
    dests = {a.dest for a in parser._actions}
    sections = (
        config.ModelConfig,
        config.DataConfig,
        config.TrainConfig,
        *config.SECTIONS.values(),
    )
    fields = {f.name for section in sections for f in dataclasses.fields(section)}
    # A part's `name` goes by its section's flag; the sections themselves are no flags.
    fields = (fields - {"name", *config.SECTIONS}) | set(config.SECTIONS)
    assert fields - dests == {"event_shape"}
    assert dests >= {"likelihood", "posterior", "prior", "num_flows", "num_components"}


def test_help_says_what_each_part_flag_does():
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser)
    helps = {a.dest: a.help for a in parser._actions}
    assert "inverse autoregressive flow" in helps["posterior"]
    assert "VampPrior" in helps["prior"] and "Flow steps" in helps["num_flows"]
    assert "Default: 2" in helps["num_flows"]


def test_nested_sections_round_trip_through_json_and_accept_old_names():
    run = config.RunConfig.for_dataset(
        "mnist", posterior="iaf", num_flows=3, prior="vamp", num_pseudo_inputs=50
    )
    assert run.model.posterior == config.PosteriorConfig("iaf", num_flows=3)
    assert config.RunConfig.from_json(run.to_json()) == run
    old = config.RunConfig.from_dict({"model": {"likelihood": "gaussian"}})  # 0.2 config.json
    assert old.model.likelihood == config.LikelihoodConfig("gaussian")
    assert config.ModelConfig(prior="vamp").prior.name == "vamp"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"likelihood": "poisson"}, "likelihood"),
        ({"latent_dim": 0}, "latent_dim"),
        ({"objective": "elbow"}, "objective"),
    ],
)
def test_bad_values_say_what_is_allowed(kwargs, message):
    with pytest.raises(ValueError, match=message):
        config.ModelConfig(**kwargs)


def test_unknown_json_fields_are_refused():
    with pytest.raises(ValueError, match="Unknown ModelConfig fields"):
        config.RunConfig.from_dict({"model": {"latent_size": 3}})


def test_for_dataset_gives_the_papers_setting_from_python():
    run = config.RunConfig.for_dataset("frey_face", latent_dim=10, epochs=3)
    assert run.model.likelihood.name == "gaussian" and run.model.hidden_units == (200,)
    assert run.model.latent_dim == 10 and run.train.epochs == 3
    assert run.data.dataset == "frey_face"
    with pytest.raises(ValueError, match="latent_size"):
        config.RunConfig.for_dataset("mnist", latent_size=3)


def test_objective_flags_build_the_objective_section_and_old_names_still_read():
    run = parse(
        "--dataset",
        "mnist",
        "--objective",
        "beta_tcvae",
        "--tc-weight",
        "4",
        "--tc-estimator",
        "weighted",
        "--warmup",
        "linear",
        "--warmup-length",
        "10",
    )
    objective = run.model.objective
    assert (objective.name, objective.tc_weight, objective.tc_estimator) == (
        "beta_tcvae",
        4.0,
        "weighted",
    )
    assert objective.warmup_steps(steps_per_epoch=600) == 6000
    assert config.RunConfig.from_json(run.to_json()) == run
    old = config.RunConfig.from_dict({"model": {"objective": "iwae", "num_samples": 5}})
    assert old.model.objective == config.ObjectiveConfig("iwae")


@pytest.mark.parametrize(
    "model, objective, message",
    [
        ({"posterior": "iaf"}, {"name": "free_bits"}, "factorize"),
        ({"prior": "vamp"}, {"name": "beta_tcvae"}, "factorize"),
        ({"num_samples": 2}, {"name": "beta_tcvae"}, "one z per datapoint"),
        (
            {},
            {"baseline": "leave_one_out", "gradient_estimator": "score_function"},
            "num-samples 2",
        ),
        ({}, {"baseline": "leave_one_out"}, "score-function"),
        ({}, {"warmup_length": 5}, "warm-up"),
        ({}, {"tc_weight": 2.0}, "beta_tcvae"),
        ({}, {"name": "iwae", "gradient_estimator": "score_function"}, "elbo"),
        ({"posterior": "point_mass"}, {"beta": 4.0}, "no KL"),
    ],
)
def test_objective_settings_that_cannot_work_are_refused_with_what_to_do(model, objective, message):
    with pytest.raises(ValueError, match=message):
        config.ModelConfig(**model, objective=config.ObjectiveConfig(**objective))


def test_the_configs_choices_are_the_librarys():
    # config.py names them without importing TensorFlow (for --help); the library owns them.
    from tfvae import decomposition, objectives, schedules

    assert config.WARMUPS == schedules.WARMUPS
    assert config.GRADIENT_ESTIMATORS == objectives.GRADIENT_ESTIMATORS
    assert config.BASELINES == objectives.BASELINES
    assert config.TC_ESTIMATORS == decomposition.ESTIMATORS
    assert set(config.OBJECTIVES) == set(objectives.OBJECTIVES)


def helps_for(dataset):
    parser = argparse.ArgumentParser()
    flags.add_arguments(parser, dataset)
    return {a.dest: a.help for a in parser._actions}


def test_help_shows_the_chosen_datasets_paper_defaults():
    # Kingma & Welling (2014), section 5: Frey Face 200 hidden units, Gaussian
    # decoder; MNIST 500 units, Bernoulli decoder.
    frey = helps_for(None)  # frey_face is the default dataset.
    assert "Default for --dataset frey_face: 200." in frey["hidden_units"]
    assert "Default for --dataset frey_face: gaussian." in frey["likelihood"]
    assert "Default for --dataset frey_face: 2." in frey["latent_dim"]
    assert "Default for --dataset frey_face: 1000." in frey["epochs"]
    mnist = helps_for("mnist")
    assert "Default for --dataset mnist: 500." in mnist["hidden_units"]
    assert "Default for --dataset mnist: bernoulli." in mnist["likelihood"]
    assert "Default: adagrad." in mnist["optimizer"]
    assert "1 / (2 N)" in mnist["weight_decay"]
