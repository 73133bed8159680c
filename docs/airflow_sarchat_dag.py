"""Airflow DAG: nightly SARChat regeneration on Dataflow, then statistics of the version it published.

Needs apache-airflow-providers-google. Both tasks launch the Flex Templates built as in
docs/dataflow.md (`regenerate` and `stats`), through projects.locations.flexTemplates.launch, with
the worker image set in the launch environment (sdkContainerImage). The regenerate template exits at
once when the inputs and configuration are unchanged (the version folder is complete), so a nightly
schedule costs a launcher VM and not a full job when nothing changed.

Set the Airflow Variables sarchat_project, sarchat_region, sarchat_bucket, sarchat_image
(REGION-docker.pkg.dev/PROJECT/REPO/sarchat:TAG) and sarchat_service_account, or edit CONFIG.
"""
import datetime

try:  # Airflow 3
    from airflow.sdk import DAG, Variable, task
except ImportError:  # Airflow 2
    from airflow import DAG
    from airflow.decorators import task
    from airflow.models import Variable

from airflow.providers.google.cloud.hooks.gcs import GCSHook
from airflow.providers.google.cloud.operators.dataflow import DataflowStartFlexTemplateOperator


def _var(name, default):
    try:
        return Variable.get(name, default)
    except Exception:  # no metadata database (e.g. parsing the file outside a deployment)
        return default


PROJECT = _var("sarchat_project", "my-project")
REGION = _var("sarchat_region", "us-central1")
BUCKET = _var("sarchat_bucket", "my-bucket")
IMAGE = _var("sarchat_image", f"{REGION}-docker.pkg.dev/{PROJECT}/sarchat/sarchat:0.1.0")
SERVICE_ACCOUNT = _var("sarchat_service_account", f"sarchat-dataflow@{PROJECT}.iam.gserviceaccount.com")
VERSIONS = f"gs://{BUCKET}/sarchat/versions"


def launch_body(template: str, job_name: str, parameters: dict) -> dict:
    """The request body of projects.locations.flexTemplates.launch (LaunchFlexTemplateRequest)."""
    return {
        "launchParameter": {
            "jobName": job_name,
            "containerSpecGcsPath": f"gs://{BUCKET}/templates/{template}.json",
            "parameters": parameters,
            "environment": {
                "sdkContainerImage": IMAGE,
                "serviceAccountEmail": SERVICE_ACCOUNT,
                "tempLocation": f"gs://{BUCKET}/tmp",
                "stagingLocation": f"gs://{BUCKET}/staging",
                "maxWorkers": 20,
            },
        }
    }


with DAG(
    dag_id="sarchat_regenerate",
    schedule="0 3 * * *",
    start_date=datetime.datetime(2026, 1, 1),
    catchup=False,
    max_active_runs=1,
    tags=["sarchat", "dataflow"],
) as dag:
    regenerate = DataflowStartFlexTemplateOperator(
        task_id="regenerate",
        project_id=PROJECT,
        location=REGION,
        wait_until_finished=True,
        body=launch_body("regenerate", "sarchat-regenerate", {
            "input": f"gs://{BUCKET}/sardet100k",
            "output_base": VERSIONS,
            "splits": "train,test",
        }),
    )

    @task
    def latest_version() -> str:
        """The version BASE/LATEST names (written by the regenerate job after publication): v-<hash>."""
        return GCSHook().download(bucket_name=BUCKET, object_name="sarchat/versions/LATEST").decode().strip()

    version = latest_version()

    stats = DataflowStartFlexTemplateOperator(
        task_id="stats",
        project_id=PROJECT,
        location=REGION,
        wait_until_finished=True,
        body=launch_body("stats", "sarchat-stats", {
            "dataset": VERSIONS + "/{{ ti.xcom_pull(task_ids='latest_version') }}",
            # beside the versions, not inside: a published version folder is never written again
            "output": f"gs://{BUCKET}/sarchat/stats/" + "{{ ti.xcom_pull(task_ids='latest_version') }}",
        }),
    )

    regenerate >> version >> stats
