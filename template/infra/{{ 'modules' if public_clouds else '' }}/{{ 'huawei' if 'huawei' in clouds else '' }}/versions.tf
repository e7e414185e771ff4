terraform {
  required_version = ">= 1.10.0"
  required_providers {
    huaweicloud = {
      source  = "huaweicloud/huaweicloud"
      version = "1.71.0"
    }
  }
}
