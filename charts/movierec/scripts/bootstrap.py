"""Register a first model when MLflow has no champion yet, so a fresh install serves.

Simulated history goes to Kafka, the ingestor stores it in the database with the simulated
users' and movies' metadata (age and gender for the online evaluator's fairness metrics), and
retrain registers the better model (challenger, and champion since there is none). Does nothing
when the champion alias exists. Settings come from the environment the chart sets.
"""

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

TRACKING_URI = os.environ["MLFLOW_TRACKING_URI"]
MODEL = os.environ["MOVIEREC_MODEL_NAME"]
KAFKA = os.environ["MOVIEREC_KAFKA_BOOTSTRAP"]
TOPIC = os.environ.get("MOVIEREC_TOPIC", "movielog")
PROVENANCE_TOPIC = os.environ.get("MOVIEREC_PROVENANCE_TOPIC", "")
PARTITIONS = int(os.environ.get("MOVIEREC_KAFKA_PARTITIONS", "3"))
# users.csv and movies.csv of the simulated world, on the pod's writable /tmp
METADATA = os.path.join(os.environ.get("TMPDIR", "/tmp"), "bootstrap-metadata")


def wait_for_mlflow(deadline_s: float = 600) -> None:
    stop = time.monotonic() + deadline_s
    while True:
        try:
            with urllib.request.urlopen(f"{TRACKING_URI}/health", timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError) as exc:
            print(f"waiting for MLflow at {TRACKING_URI}: {exc}", flush=True)
        if time.monotonic() > stop:
            sys.exit(f"MLflow at {TRACKING_URI} did not answer within {deadline_s:.0f} s")
        time.sleep(3)


def champion_exists() -> bool:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    try:
        MlflowClient(TRACKING_URI).get_model_version_by_alias(MODEL, "champion")
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return False
        raise
    return True


def create_topics(deadline_s: float = 600) -> None:
    """The event and provenance topics exist before anyone reads them: an ingest run that
    subscribes to a topic nobody has written yet never counts as caught up."""
    from kafka.admin import KafkaAdminClient, NewTopic
    from kafka.errors import KafkaError, TopicAlreadyExistsError

    stop = time.monotonic() + deadline_s
    while True:
        try:
            admin = KafkaAdminClient(bootstrap_servers=KAFKA.split(","), request_timeout_ms=30_000)
            break
        except KafkaError as exc:
            print(f"waiting for Kafka at {KAFKA}: {exc}", flush=True)
            if time.monotonic() > stop:
                sys.exit(f"Kafka at {KAFKA} did not answer within {deadline_s:.0f} s")
            time.sleep(3)
    try:
        existing = set(admin.list_topics())
        for name in (t for t in (TOPIC, PROVENANCE_TOPIC) if t and t not in existing):
            try:
                admin.create_topics([NewTopic(name, PARTITIONS, 1)])
                print(f"created topic {name} ({PARTITIONS} partitions)", flush=True)
            except TopicAlreadyExistsError:
                pass  # another writer's auto-creation won the race
    finally:
        admin.close()


def run(*args: str) -> None:
    print("+ movierec " + " ".join(args), flush=True)
    subprocess.run(["movierec", *args], check=True)


def main() -> None:
    wait_for_mlflow()
    if champion_exists():
        # every upgrade runs this Job: it must end at once (helm upgrade --wait does not wait
        # for it, and a still-running bootstrap pod reads as an unready release)
        print(f"model {MODEL!r} has a champion already: nothing to do")
        return
    create_topics()
    run(
        "simulate",
        "--users", os.environ.get("MOVIEREC_BOOTSTRAP_USERS", "2000"),
        "--movies", os.environ.get("MOVIEREC_BOOTSTRAP_MOVIES", "500"),
        "--hours", os.environ.get("MOVIEREC_BOOTSTRAP_HOURS", "48"),
        "--seed", os.environ.get("MOVIEREC_BOOTSTRAP_SEED", "0"),
        "--kafka", KAFKA,
        "--topic", TOPIC,
        "--metadata-out", METADATA,
    )  # fmt: skip
    db = os.environ["MOVIEREC_INGESTOR_DB_URL"]
    run(
        "ingest",
        "--source", f"kafka://{KAFKA}/{TOPIC}",
        "--metadata", METADATA,  # the simulated users' age and gender: fairness needs them
        "--db", db,
        "--group", os.environ.get("MOVIEREC_INGESTOR_GROUP", "movierec-ingestor"),
        "--until-caught-up",
    )  # fmt: skip
    run("retrain", "--db", db, "--name", MODEL, "--tracking-uri", TRACKING_URI, "--force")


if __name__ == "__main__":
    main()
