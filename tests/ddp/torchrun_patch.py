"""torchrun as Debian ships it (python3-torch 1.13) on Python 3.11: Std.from_str("0") returns
None, because iterating an IntFlag no longer yields NONE or ALL, and torchrun then fails in
to_map. Importing this module replaces from_str with a parser of "0" / "0:1,1:2"; then
torch.distributed.run.main(argv) is torchrun itself."""
import re

from torch.distributed.elastic.multiprocessing import api as _api


def _from_str(cls, vm):
    if re.fullmatch(r"[0-3]", vm):
        return cls(int(vm))
    if re.fullmatch(r"(\d:[0-3],)*\d:[0-3]", vm):
        return {int(k): cls(int(v)) for k, v in (m.split(":") for m in vm.split(","))}
    raise ValueError(f"{vm} does not match '0' .. '3' or '<rank>:<0..3>,...'")


_api.Std.from_str = classmethod(_from_str)
