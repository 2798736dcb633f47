"""Deploy loops: protocol <-> transport with deadlines, retries and progress."""

from sparkflash.deploy.base import DeployResult, Flasher, RegionResult, WriteReport
from sparkflash.deploy.run import Ledger, deploy_release

__all__ = ["DeployResult", "Flasher", "RegionResult", "WriteReport", "Ledger", "deploy_release"]
