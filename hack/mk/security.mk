# Security area: kube-score (pinned, from the Go module proxy) over the chart
# render and every golden desired object of the operator (test/kubescore).

TEST_PREP += kube-score

.PHONY: kube-score

kube-score: ## Install the pinned kube-score (Go module proxy, cached); writes IMKUBE_KUBE_SCORE to ENV_DIR/kube-score.env
	@mkdir -p $(ENV_DIR)
	@hack/kube-score.sh env > $(ENV_DIR)/kube-score.env
