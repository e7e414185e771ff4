output "zones" {
  description = "The two zones every cluster spans."
  value       = local.zones
}

output "kubeconfigs" {
  description = "Each cluster's kubeconfig (make bootstrap writes it to .kube/<cluster>.yaml, outside Git)."
  value       = { for name, c in data.alicloud_cs_cluster_credential.this : name => c.kube_config }
  sensitive   = true
}

output "redis_address" {
  description = "host:port of the Redis: the answer redis_addresses.aliyun."
  value       = "${alicloud_kvstore_instance.redis.connection_domain}:6379"
}

output "rocketmq_name_server" {
  description = "The RocketMQ VPC endpoint: the answer rocketmq_name_servers.aliyun."
  value       = var.rocketmq ? one([for e in alicloud_rocketmq_instance.this[0].network_info[0].endpoints : e.endpoint_url if e.endpoint_type == "TCP_VPC"]) : null
}

output "backup_bucket" {
  description = "The OSS bucket Velero writes to."
  value       = alicloud_oss_bucket.backups.bucket
}

output "ingress_address" {
  description = "The hub's ingress load balancer address the DNS records point at."
  value       = var.ingress_address
}

output "nodes" {
  description = "Per cluster: node count, instance types and node image."
  value = { for name, p in alicloud_cs_kubernetes_node_pool.this : name => {
    count          = p.desired_size
    instance_types = p.instance_types
    image          = p.image_type
  } }
}
