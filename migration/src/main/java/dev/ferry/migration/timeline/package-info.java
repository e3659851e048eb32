/**
 * A migration over time: {@link dev.ferry.migration.timeline.Timeline} records the figures a
 * migration reports as it runs, {@link dev.ferry.migration.timeline.TimelineSvg} draws them
 * (remaining bytes, dirty rate, throughput and throttle, with syncs, passes and the switchover
 * marked) as a plain SVG file.
 */
package dev.ferry.migration.timeline;
