"""Batch scoring: the server's models, feature assembly and defaults over whole tables, in one process
(`BatchScorer`, scorer), on Spark (`sibyl.batch.spark`, mapInArrow) or on Ray Data (`sibyl.batch.ray`,
map_batches); feature snapshots into Redis from the same engines (`write_partition`). Arrow tables in and out of
the request path's rows (table); optional prediction logs of a batch run, Parquet or the server's sink (log).
docs/batch.md says when to use which.

May import (tests/test_layout.py RANK): config, serving, features, predlog, models, observability, errors and the
generated code; never app (same rank), api, embedded, process or cli. pyspark, ray and pyarrow are optional
extras (`sibyl[spark]`, `sibyl[ray]`), imported only by the modules that need them.
"""

from sibyl.batch.log import ParquetLog, SinkLog
from sibyl.batch.scorer import BatchScorer, Bundle
from sibyl.features.bulk import SnapshotWriter, write_partition

__all__ = ["BatchScorer", "Bundle", "ParquetLog", "SinkLog", "SnapshotWriter", "write_partition"]
