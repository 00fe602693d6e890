"""What sets a configuration apart, as report tables and notebooks name it."""

from __future__ import annotations

from explab.configurations import Configuration, builds, configuration_of, label_order, labels


def test_labels_name_the_chosen_class_and_leave_out_settings_a_configuration_lacks() -> None:
    adam = (("optimizer._target_", "torch.optim.Adam"), ("optimizer.lr", "0.1"))
    sgd = (("optimizer._target_", "torch.optim.SGD"), ("optimizer.lr", "0.1"), ("optimizer.momentum", "0.9"))
    plain_sgd = (("optimizer._target_", "torch.optim.SGD"), ("optimizer.lr", "0.1"), ("optimizer.momentum", "0.0"))
    assert labels([adam, sgd, plain_sgd]) == {
        adam: "optimizer=Adam",
        sgd: "optimizer=SGD, optimizer.momentum=0.9",
        plain_sgd: "optimizer=SGD, optimizer.momentum=0.0",
    }
    # lacking a key is all that sets this one apart: the label says so rather than nothing
    without, extra = (("x", "1"),), (("x", "1"), ("y", "2"))
    assert labels([without, extra]) == {without: "y=None", extra: "y=2"}


def test_a_setting_added_on_its_own_is_named_where_other_settings_would_tell_the_runs_apart() -> None:
    """``trainer=overfit_batches`` adds ``trainer.overfit_batches=2``: its run read as
    ``trainer.accelerator=cpu, trainer.max_epochs=30``, a full run of more epochs, not one that trained on two
    batches. Only a setting that comes with a class (SGD's momentum beside Adam) is left for the class to say."""
    full = (("trainer.accelerator", "auto"), ("trainer.max_epochs", "3"))
    overfit = (("trainer.accelerator", "cpu"), ("trainer.max_epochs", "30"), ("trainer.overfit_batches", "2"))
    assert labels([full, overfit]) == {
        full: "trainer.accelerator=auto, trainer.max_epochs=3",
        overfit: "trainer.accelerator=cpu, trainer.max_epochs=30, trainer.overfit_batches=2",
    }
    adam = (("optimizer._target_", "torch.optim.Adam"), ("trainer.max_epochs", "3"))
    sgd = (("optimizer._target_", "torch.optim.SGD"), ("optimizer.momentum", "0.9"), ("trainer.max_epochs", "30"))
    assert labels([adam, sgd])[sgd] == "optimizer=SGD, trainer.max_epochs=30"


def test_labels_round_a_drawn_number_only_as_far_as_keeps_configurations_apart() -> None:
    drawn = [(("optimizer.lr", lr), ("model.depth", "2")) for lr in ("0.0012022983166419944", "0.00228811366847")]
    assert sorted(labels(drawn).values()) == ["optimizer.lr=0.001202", "optimizer.lr=0.002288"]
    # two values alike in their first four digits keep as many as tell them apart
    close = [(("optimizer.lr", lr),) for lr in ("0.0012022983", "0.0012024117", "0.01")]
    assert sorted(labels(close).values()) == ["optimizer.lr=0.0012023", "optimizer.lr=0.0012024", "optimizer.lr=0.01"]
    # values as typed stay as typed, names too
    typed = [(("optimizer.momentum", m), ("run", name)) for m, name in (("0.0", "a1.5"), ("0.9", "b"))]
    assert sorted(labels(typed).values()) == ["optimizer.momentum=0.0, run=a1.5", "optimizer.momentum=0.9, run=b"]


def test_labels_name_a_subtree_another_configuration_lacks_by_its_entries_not_every_setting() -> None:
    def callbacks(patience: str) -> Configuration:
        return (
            ("callbacks.early_stopping.monitor", "val/acc"),
            ("callbacks.early_stopping.patience", patience),
            ("callbacks.lr_monitor.logging_interval", "epoch"),
            ("optimizer.lr", "0.1"),
        )

    patient, hasty, none = callbacks("10"), callbacks("3"), (("callbacks", "{}"), ("optimizer.lr", "0.1"))
    # the setting that varies between the two with callbacks still tells those two apart
    assert labels([patient, hasty, none]) == {
        patient: "callbacks=early_stopping+lr_monitor, callbacks.early_stopping.patience=10",
        hasty: "callbacks=early_stopping+lr_monitor, callbacks.early_stopping.patience=3",
        none: "callbacks={}",
    }
    # a subtree with a class reads as the class, as a config group's choice does
    ddp = (("trainer.strategy._target_", "lightning.pytorch.strategies.DDPStrategy"), ("trainer.strategy.x", "1"))
    assert labels([ddp, (("trainer.strategy", "auto"),)])[ddp] == "trainer.strategy=DDPStrategy"
    # subtrees with the same entries, told apart only deeper down: every setting, as it is
    deep, other = (("a.b.c", "1"),), (("a.b.d", "1"),)
    assert labels([deep, other, (("a", "{}"),)])[deep] == "a.b.c=1"


def test_a_class_and_the_subtree_folded_into_it_are_named_once() -> None:
    cosine = (("scheduler._target_", "torch.optim.lr_scheduler.CosineAnnealingLR"), ("scheduler.T_max", "None"))
    step = (("scheduler._target_", "torch.optim.lr_scheduler.StepLR"), ("scheduler.step_size", "5"))
    # read "scheduler=CosineAnnealingLR, scheduler=CosineAnnealingLR" beside a run without a scheduler
    assert labels([cosine, (("scheduler", "None"),), step]) == {
        cosine: "scheduler=CosineAnnealingLR",
        (("scheduler", "None"),): "scheduler=None",
        step: "scheduler=StepLR",
    }


def test_a_classs_own_settings_the_same_wherever_they_occur_stay_out_of_its_label() -> None:
    adam = (("optimizer._target_", "torch.optim.Adam"), ("optimizer.lr", "0.1"))
    sgd = (
        ("optimizer._target_", "torch.optim.SGD"),
        ("optimizer.lr", "0.1"),
        ("optimizer.momentum", "0.9"),
        ("optimizer.nesterov", "False"),
    )
    assert labels([adam, sgd]) == {adam: "optimizer=Adam", sgd: "optimizer=SGD"}
    # the class alone no longer tells two apart: what does is shown
    slow_sgd = (*sgd[:1], ("optimizer.lr", "0.01"), *sgd[2:])
    assert labels([adam, sgd, slow_sgd])[slow_sgd] == "optimizer=SGD, optimizer.lr=0.01"


def test_configurations_each_tried_one_change_away_read_as_that_change() -> None:
    """An experiment a researcher tried one thing at a time in: one run without its callbacks' subtree, one on
    another scheduler, one on another optimizer beside the common recipe. Every label listed every setting any
    configuration changed, thirty of them in a digits experiment, and a class folded with its subtree twice
    (``scheduler=CosineAnnealingLR, scheduler=CosineAnnealingLR``)."""
    common: dict[str, str] = {
        "callbacks.early_stopping.patience": "10",
        "callbacks.early_stopping.monitor": "val/acc",
        "callbacks.lr_monitor.logging_interval": "epoch",
        "callbacks.model_checkpoint.save_top_k": "1",
        "optimizer._target_": "torch.optim.Adam",
        "optimizer.lr": "0.003",
        "scheduler._target_": "torch.optim.lr_scheduler.CosineAnnealingLR",
        "scheduler.T_max": "None",
        "trainer.max_epochs": "2",
        "data.batch_size": "64",
    }

    def changed(**settings: str | None) -> Configuration:
        found = {**common, **{k.replace("__", "."): v for k, v in settings.items()}}
        return tuple(sorted((k, v) for k, v in found.items() if v is not None))

    no_callbacks = tuple(
        (k, v) for k, v in changed() if not k.startswith(("callbacks.early_stopping", "callbacks.lr_monitor"))
    )
    plateau = changed(scheduler___target_="explab.models.plateau.reduce_lr_on_plateau", scheduler__T_max=None,
                      scheduler__factor="0.1", scheduler__patience="5")  # fmt: skip
    configurations = [
        changed(),
        changed(trainer__max_epochs="1"),
        changed(optimizer__lr="0.01", trainer__max_epochs="1"),
        changed(data__batch_size="8"),
        changed(callbacks__early_stopping__patience="0"),
        changed(callbacks__model_checkpoint__save_top_k="-1"),
        changed(optimizer___target_="torch.optim.SGD", optimizer__momentum="0.9"),
        no_callbacks,
        plateau,
    ]
    named = labels(configurations)
    assert [named[c] for c in configurations] == [
        "common settings",
        "trainer.max_epochs=1",
        "optimizer.lr=0.01, trainer.max_epochs=1",
        "data.batch_size=8",
        "callbacks.early_stopping.patience=0",
        "callbacks.model_checkpoint.save_top_k=-1",
        "optimizer=SGD",  # SGD's own momentum comes with it
        "callbacks=model_checkpoint",  # the subtree it keeps less of, by the entries it keeps
        "scheduler=reduce_lr_on_plateau",  # its settings, and the cosine's it lacks, come with the class
    ]
    # a grid of few settings still reads as every setting of each point
    grid = [changed(optimizer__lr=lr, trainer__max_epochs=e) for lr in ("0.01", "0.1") for e in ("1", "2")]
    assert labels(grid)[grid[0]] == "optimizer.lr=0.01, trainer.max_epochs=1"


def test_labels_sort_by_their_numbers_as_numbers() -> None:
    shown = ["optimizer.lr=0.01", "optimizer.lr=1e-05", "optimizer.lr=0.001, depth=10", "optimizer.lr=0.001, depth=2"]
    assert sorted(shown, key=label_order) == [
        "optimizer.lr=1e-05",
        "optimizer.lr=0.001, depth=2",
        "optimizer.lr=0.001, depth=10",
        "optimizer.lr=0.01",
    ]
    # names and words keep their order as text, after the numbers of the same key
    assert sorted(["optimizer=SGD", "optimizer=Adam", "all"], key=label_order) == [
        "all",
        "optimizer=Adam",
        "optimizer=SGD",
    ]


def test_an_option_builds_the_class_it_is_named_after() -> None:
    assert builds("adamw", "torch.optim.AdamW") and builds("AdamW", "torch.optim.AdamW")
    assert builds("lazy_adam", "explab.models.LazyAdam"), "the option's underscores are not in the class name"
    assert not builds("adam", "torch.optim.AdamW")


def test_how_often_a_run_saves_and_logs_does_not_set_it_apart() -> None:
    """Runs that differ only in how often last.ckpt is written or steps are logged trained the same thing:
    a report gave them a row each, labelled callbacks.last_checkpoint.min_interval_seconds=0 and =10.0."""
    trained = {"optimizer.lr": "0.003", "trainer.max_epochs": "3"}
    often = {**trained, "callbacks.last_checkpoint.min_interval_seconds": "0", "trainer.log_every_n_steps": "1"}
    rarely = {**trained, "callbacks.last_checkpoint.min_interval_seconds": "10.0", "trainer.log_every_n_steps": "50"}
    assert configuration_of(often) == configuration_of(rarely) == tuple(sorted(trained.items()))
    assert configuration_of({**trained, "callbacks.model_checkpoint.monitor": "val/loss"}) != configuration_of(trained)
    # nor the batches it validates and tests in: a run of data.eval_batch_size=null got a row of its own
    wide, narrow = {**trained, "data.eval_batch_size": "512"}, {**trained, "data.eval_batch_size": "None"}
    assert configuration_of(wide) == configuration_of(narrow) == configuration_of(trained)
    assert configuration_of({**trained, "data.batch_size": "32"}) != configuration_of(trained)


def test_runs_recorded_before_a_setting_existed_share_a_configuration_with_those_that_record_its_value(
    store,
) -> None:
    """A recipe's seeds trained before ``matmul_precision`` and ``model.init`` were recorded trained in torch's
    defaults: they are one configuration with later seeds that record those defaults, not another."""
    from mlflow.tracking import MlflowClient

    from explab.configurations import group_runs
    from tests.conftest import tracking_uri_for

    client = MlflowClient(tracking_uri_for(store))
    experiment = client.create_experiment("recipe")

    def recorded(seed: int, **settings: str):
        run = client.create_run(experiment)
        for key, value in {"optimizer.lr": "0.01", "seed": str(seed), **settings}.items():
            client.log_param(run.info.run_id, key, value)
        return client.get_run(run.info.run_id)

    before = recorded(1)
    after = recorded(2, matmul_precision="highest", **{"model.init": "default"})
    tf32 = recorded(3, matmul_precision="high", **{"model.init": "default"})
    groups = {tuple(sorted(r.info.run_id for r in runs)) for runs in group_runs([before, after, tf32]).values()}
    assert groups == {tuple(sorted((before.info.run_id, after.info.run_id))), (tf32.info.run_id,)}


def test_the_same_data_read_from_another_folder_is_the_same_configuration() -> None:
    """Seeds trained on a laptop and on a cluster's scratch space (one data set, two folders) were reported
    as two configurations, labelled by their data.data_dir."""
    laptop = {"optimizer.lr": "0.003", "data.data_dir": "/home/ada/explab/data/mnist", "data.batch_size": "64"}
    cluster = {**laptop, "data.data_dir": "/scratch/ada/explab/data/mnist"}
    assert configuration_of(laptop, "43a28c7d") == configuration_of(cluster, "43a28c7d")
    assert configuration_of(laptop, "43a28c7d") != configuration_of(cluster, "67da30cd"), "other files, other data"
    assert ("data.fingerprint", "43a28c7d") in configuration_of(laptop, "43a28c7d")
    # without a fingerprint the folder is all that tells the data apart; data without a folder keeps no tag
    assert configuration_of(laptop) != configuration_of(cluster)
    digits = {"optimizer.lr": "0.003", "data.batch_size": "64"}
    assert configuration_of(digits, "43a28c7d") == configuration_of(digits)
    assert configuration_of({**laptop, "data.data_dir": "s3://lab/mnist"}, "43a28c7d") == configuration_of(
        laptop, "43a28c7d"
    )


def test_runs_are_grouped_by_the_fingerprint_they_record_not_their_data_folder(store) -> None:
    from mlflow.tracking import MlflowClient

    from explab.configurations import group_runs
    from tests.conftest import tracking_uri_for

    client = MlflowClient(tracking_uri_for(store))
    experiment = client.create_experiment("mnist_cnn")

    def recorded(seed: int, folder: str, fingerprint: str):
        run = client.create_run(experiment, tags={"data.fingerprint": fingerprint})
        for key, value in {"optimizer.lr": "0.003", "seed": str(seed), "data.data_dir": folder}.items():
            client.log_param(run.info.run_id, key, value)
        return client.get_run(run.info.run_id)

    runs = [recorded(1, "/home/ada/mnist", "43a28c7d"), recorded(2, "/scratch/ada/mnist", "43a28c7d")]
    runs.append(recorded(3, "/scratch/ada/mnist", "67da30cd"))  # other files put in that folder
    groups = sorted(sorted(int(r.data.params["seed"]) for r in members) for members in group_runs(runs).values())
    assert groups == [[1, 2], [3]]


def test_the_datas_fingerprint_is_named_only_where_nothing_else_tells_configurations_apart() -> None:
    """The fingerprint changes with a setting that reshapes the data (``data.max_len``): a text search labelled
    each row ``data.fingerprint=6ae28f80f06748fe, data.max_len=64, ...``, a hash beside the setting it follows."""
    short = (("data.fingerprint", "6b6398095c2ff6c2"), ("data.max_len", "16"), ("optimizer.lr", "0.01"))
    long = (("data.fingerprint", "6ae28f80f06748fe"), ("data.max_len", "64"), ("optimizer.lr", "0.01"))
    assert labels([short, long]) == {short: "data.max_len=16", long: "data.max_len=64"}
    # the same settings on other files: the fingerprint is all that sets them apart
    other_files = (("data.fingerprint", "0123456789abcdef"), *long[1:])
    assert labels([long, other_files])[other_files] == "data.fingerprint=0123456789abcdef"
