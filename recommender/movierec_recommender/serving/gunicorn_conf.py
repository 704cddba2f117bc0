"""The old path of the services' gunicorn settings: `movierec_recommender.web.gunicorn_conf`."""

from movierec_recommender.web.gunicorn_conf import *  # noqa: F403
from movierec_recommender.web.gunicorn_conf import child_exit, on_starting, post_fork, worker_exit

__all__ = ["child_exit", "on_starting", "post_fork", "worker_exit"]
