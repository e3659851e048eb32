/**
 * vhost devices (seeds 000 and 001): backends that write guest RAM by DMA, invisible to the
 * accelerator, and record it in a shared dirty log per backend type, which one elected vhost dev
 * scans for memory sections on each sync.
 */
package dev.ferry.vhost;
