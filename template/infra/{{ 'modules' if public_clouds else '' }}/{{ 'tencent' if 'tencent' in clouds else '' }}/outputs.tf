output "zones" {
  description = "The two zones every cluster spans."
  value       = local.zones
}

output "nodes" {
  description = "Per cluster: node count, instance types and node image."
  value = { for name, p in tencentcloud_kubernetes_node_pool.this : name => {
    count          = p.desired_capacity
    instance_types = concat([p.auto_scaling_config[0].instance_type], p.auto_scaling_config[0].backup_instance_types)
    image          = p.node_os
  } }
}

output "kubeconfigs" {
  description = "Each cluster's kubeconfig (make bootstrap writes it to .kube/<cluster>.yaml, outside Git)."
  value       = { for name, d in data.tencentcloud_kubernetes_clusters.this : name => one(d.list[*].kube_config) }
  sensitive   = true
}

output "redis_address" {
  description = "host:port of the Redis: the answer redis_addresses.tencent."
  value       = "${tencentcloud_redis_instance.this.ip}:${tencentcloud_redis_instance.this.port}"
}

output "rocketmq_name_server" {
  description = "The RocketMQ VPC endpoint: the answer rocketmq_name_servers.tencent."
  value       = var.rocketmq ? tencentcloud_trocket_rocketmq_instance.this[0].vpc_end_point : null
}

output "backup_bucket" {
  description = "The COS bucket Velero writes to."
  value       = tencentcloud_cos_bucket.backups.bucket
}

output "ingress_address" {
  description = "The hub's ingress load balancer address the DNS records point at."
  value       = var.ingress_address
}
