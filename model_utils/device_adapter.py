"""Device adapter: ModelArts when ``enable_modelarts`` is set, local otherwise."""
from model_utils import local_adapter, moxing_adapter


def get_adapter(config=None):
    if config is not None and config.get("enable_modelarts", False):
        return moxing_adapter
    return local_adapter


def device_info(config=None):
    adapter = get_adapter(config)
    return {"device_id": adapter.get_device_id(), "rank_id": adapter.get_rank_id(),
            "device_num": adapter.get_device_num(), "job_id": adapter.get_job_id()}
