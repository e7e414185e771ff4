variable "name" {
  description = "The company's slug: clusters are named <name>-<cluster>, shared resources <name>-huawei-*."
  type        = string
}

variable "bucket_stem" {
  description = "The start of the backup bucket's name (bucket names are global and short)."
  type        = string
  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{0,22}[a-z0-9]$", var.bucket_stem))
    error_message = "bucket_stem must be 2 to 24 lowercase letters, digits and '-', not at either end."
  }
}

variable "vpc_cidr" {
  description = "The VPC's address range; each cluster takes two /24 of it (one per zone)."
  type        = string
  validation {
    condition     = can(cidrnetmask(var.vpc_cidr)) && tonumber(split("/", var.vpc_cidr)[1]) <= 20
    error_message = "vpc_cidr must be an IPv4 CIDR of /20 or wider, e.g. 10.10.0.0/16."
  }
}

variable "kubernetes_version" {
  description = "CCE version of the platform's Kubernetes minor."
  type        = string
}

variable "clusters" {
  description = "The clusters on this cloud: name => index (distinct network ranges), node count and instance types."
  type = map(object({
    index          = number
    nodes          = number
    instance_types = list(string)
    deletion_guard = bool
  }))
  validation {
    condition     = alltrue([for c in values(var.clusters) : c.nodes >= 2 && c.index >= 0 && c.index < 4])
    error_message = "Every cluster needs at least 2 nodes (one per zone) and an index from 0 to 3 (dev, staging, prod, hub)."
  }
}

variable "node_image" {
  description = "Node operating system (CCE offers no Anolis image): Huawei Cloud EulerOS 2.0."
  type        = string
  default     = "Huawei Cloud EulerOS 2.0"
  validation {
    condition     = contains(["Huawei Cloud EulerOS 2.0", "Ubuntu 22.04"], var.node_image)
    error_message = "node_image must be an operating system CCE offers for 1.34 nodes: [Huawei Cloud EulerOS 2.0, Ubuntu 22.04]."
  }
}

variable "redis_flavor" {
  description = "DCS for Redis flavor (the Dapr state store, and pub/sub with Redis Streams): 1 GB, primary and standby."
  type        = string
  default     = "redis.ha.xu1.large.r2.1"
}

variable "redis_password" {
  description = "The Redis password, the one `opc secrets set <namespace>/redis` stores for Dapr."
  type        = string
  sensitive   = true
}

variable "rocketmq" {
  description = "Whether to create DMS for RocketMQ (pubsub: rocketmq)."
  type        = bool
  default     = false
}

variable "dns_zone" {
  description = "Huawei Cloud DNS public zone of the hub's host names (the company's base domain); null when the hub is elsewhere."
  type        = string
  default     = null
}

variable "dns_records" {
  description = "Host labels under dns_zone that point at the hub's ingress gateway."
  type        = list(string)
  default     = []
}

variable "ingress_address" {
  description = "The hub ingress gateway's load balancer address, known once the gateway runs (make bootstrap passes it); no DNS record before."
  type        = string
  default     = ""
  validation {
    condition     = var.ingress_address == "" || can(cidrhost("${var.ingress_address}/32", 0))
    error_message = "ingress_address must be an IPv4 address."
  }
}
