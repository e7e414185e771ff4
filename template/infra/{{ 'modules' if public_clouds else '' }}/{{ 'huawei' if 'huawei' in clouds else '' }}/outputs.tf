output "zones" {
  description = "The two zones every cluster spans."
  value       = local.zones
}

output "nodes" {
  description = "Per cluster: node count, instance types and node image."
  value = { for name, c in var.clusters : name => {
    count          = sum([for key, p in huaweicloud_cce_node_pool.this : p.initial_node_count if local.subnets[key].cluster == name])
    instance_types = distinct([for key, p in huaweicloud_cce_node_pool.this : p.flavor_id if local.subnets[key].cluster == name])
    image          = one(distinct([for key, p in huaweicloud_cce_node_pool.this : p.os if local.subnets[key].cluster == name]))
  } }
}

output "kubeconfigs" {
  description = "Each cluster's kubeconfig (make bootstrap writes it to .kube/<cluster>.yaml, outside Git)."
  value       = { for name, c in huaweicloud_cce_cluster.this : name => c.kube_config_raw }
  sensitive   = true
}

output "redis_address" {
  description = "host:port of the Redis: the answer redis_addresses.huawei."
  value       = "${huaweicloud_dcs_instance.redis.domain_name}:${huaweicloud_dcs_instance.redis.port}"
}

output "rocketmq_name_server" {
  description = "The RocketMQ name server address: the answer rocketmq_name_servers.huawei."
  value       = var.rocketmq ? huaweicloud_dms_rocketmq_instance.this[0].namesrv_address : null
}

output "backup_bucket" {
  description = "The OBS bucket Velero writes to."
  value       = huaweicloud_obs_bucket.backups.bucket
}

output "ingress_address" {
  description = "The hub's ingress load balancer address the DNS records point at."
  value       = var.ingress_address
}
