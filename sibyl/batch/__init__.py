"""Batch scoring: the server's models, feature assembly and defaults over whole tables, in one process
(`BatchScorer`, scorer), on Spark (`sibyl.batch.spark`, mapInArrow) or on Ray Data (`sibyl.batch.ray`,
map_batches); feature snapshots into Redis from the same engines (`write_partition`). Arrow tables in and out of
the request path's rows (table); optional prediction logs of a batch run, Parquet or the server's sink (log).
docs/batch.md says when to use which.

Model quality at scale (docs/monitoring.md#batch-archive-and-spark): `sibyl predlog archive` writes the prediction
log and the outcomes as Parquet in a stable layout (archive), reading the file log or Kafka from where it last
stopped (archive_sources); the Spark job (quality) joins them and computes sibyl.quality's metrics per model and
slice, the slices labelled as the server does with the period's choices made once (slicing).

May import (tests/test_layout.py RANK): config, serving, features, predlog, models, observability, errors and the
generated code; never app (same rank), api, embedded, process or cli. pyspark, ray and pyarrow are optional
extras (`sibyl[spark]`, `sibyl[ray]`), imported only by the modules that need them.
"""

from sibyl.batch.log import ParquetLog, SinkLog
from sibyl.batch.scorer import BatchScorer, Bundle
from sibyl.features.bulk import SnapshotWriter, write_partition

__all__ = ["BatchScorer", "Bundle", "ParquetLog", "SinkLog", "SnapshotWriter", "write_partition"]
