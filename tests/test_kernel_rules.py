"""The bundled kernel-name table (models/kernels/rules.toml) on kernel names from real serving and training stacks."""

from __future__ import annotations

import pytest

from harness.ops.classify import classify_name, rule_table

RULES = rule_table()


@pytest.mark.parametrize("name, category", [
    ("ncclDevKernel_Generic_1(ncclDevKernelArgsStorage<4096ul>)", "other"),  # any collective: see Collective name
    ("ncclDevKernel_Reduce_Sum_f32_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "other"),  # to one root: no category
    ("ncclDevKernel_AllReduce_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "all_reduce"),
    ("ncclDevKernel_ReduceScatter_Sum_bf16_RING_LL(ncclDevKernelArgsStorage<4096ul>)", "reduce_scatter"),
    ("ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)", "send_recv"),
    ("void vllm::cross_device_reduce_1stage<__nv_bfloat16, 8>(vllm::RankData*, vllm::RankSignals, "
     "vllm::Signal*, __nv_bfloat16*, int, int)", "all_reduce"),
    ("void vllm::cross_device_reduce_2stage<__nv_bfloat16, 8>(vllm::RankData*)", "all_reduce"),
    ("void tensorrt_llm::kernels::oneShotAllReduceKernel<__nv_bfloat16, 8>(tensorrt_llm::kernels::AllReduceParams)",
     "all_reduce"),
    ("void c10d::symmetric_memory::one_shot_all_reduce_kernel<c10::BFloat16, 8, true>(c10::BFloat16**)", "all_reduce"),
    ("void flashinfer::norm::FusedAddRMSNormKernel<8u, __nv_bfloat16>(__nv_bfloat16*, __nv_bfloat16*)", "norm"),
    ("void flashinfer::norm::RMSNormKernel<8u, __nv_bfloat16>(__nv_bfloat16*, __nv_bfloat16*)", "norm"),
    ("void flashinfer::sampling::TopKTopPSamplingFromProbKernel<1024u, (cub::BlockScanAlgorithm)2>(float*)", "other"),
    ("void flashinfer::activation::act_and_mul_kernel<__nv_bfloat16, &silu>(__nv_bfloat16*, __nv_bfloat16 const*, "
     "int)", "elementwise"),
    ("void vllm::reshape_and_cache_flash_kernel<__nv_bfloat16, __nv_bfloat16, (vllm::Fp8KVCacheDataType)0>"
     "(__nv_bfloat16 const*)", "copy"),
    ("void vllm::rotary_embedding_kernel<c10::BFloat16, true>(long const*, c10::BFloat16*)", "elementwise"),
    ("triton_tem_fused_mm_0", "gemm"),
    ("triton_tem_fused_addmm_3", "gemm"),
    ("void cutlass::Kernel2<cutlass_sm90_grouped_gemm_bf16_128x128>(cutlass_sm90_grouped_gemm_bf16_128x128::Params)",
     "grouped_gemm"),
    ("void cutlass::device_kernel<dpsk::grouped_gemm::cuda::m_grouped_fp8_ptp128c::GemmKernel>(dpsk::grouped_gemm::"
     "cuda::m_grouped_fp8_ptp128c::GemmKernel::Params)", "grouped_gemm"),
    # the namespace also holds dense GEMMs (DeepSeek's training profile)
    ("void cutlass::device_kernel<dpsk::grouped_gemm::cuda::fp8_ptp128c::GemmKernel>(dpsk::grouped_gemm::cuda::"
     "fp8_ptp128c::GemmKernel::Params)", "gemm"),
    ("void cuda::per_channel_cast_and_transpose<__nv_bfloat16, 128>(__nv_bfloat16 const*)", "elementwise"),
    ("nvjet_tst_128x256_64x4_2x1_v_bz_coopA_TNN", "gemm"),
    ("fused_moe_kernel", "grouped_gemm"),
    ("_fwd_kernel", "attention"),
    ("_fwd_kernel_stage1", "attention"),
    ("_attn_fwd", "attention"),
    ("void cudnn::winograd::generateWinogradTilesKernel<0, float, float>(cudnn::winograd::GenerateWinogradTilesParams"
     "<float, float>)", "gemm"),
    ("void cudnn::winograd_nonfused::winogradForwardData4x4<float, float>(cudnn::winograd_nonfused::"
     "WinogradDataParams<float, float, int, int>)", "gemm"),
    ("Memcpy PtoP (Device -> Device)", "send_recv"),
    # unchanged neighbours of the rules above
    ("void flash::flash_fwd_kernel<Flash_fwd_kernel_traits<128, 128, 64, 4, false, false, cutlass::bfloat16_t>>"
     "(Flash_fwd_params)", "attention"),
    ("void flashinfer::BatchDecodeWithPagedKVCacheKernel<(flashinfer::PosEncodingMode)0, 2u>(flashinfer::Params)",
     "attention"),
    ("void at::native::layer_norm_fwd_kernel<float>(float const*)", "norm"),
    ("Memcpy DtoD (Device -> Device)", "copy"),
    ("void at::native::embedding_backward_kernel<float>(long*)", "other"),
])
def test_bundled_rules_classify_real_kernel_names(name, category):
    assert classify_name(name, "", RULES) == category


@pytest.mark.parametrize("collective, category", [
    ("all_to_all", "all_to_all"), ("all_to_allv", "all_to_all"), ("allreduce", "all_reduce"),
    ("all_gather_into_tensor", "all_gather"), ("_allgather_base", "all_gather"),
    ("reduce_scatter_tensor", "reduce_scatter"), ("send", "send_recv"), ("recv", "send_recv"),
    ("broadcast", "other"), ("", "send_recv"),
])
def test_nccl_kernels_take_the_collective_kineto_names(collective, category):
    """A SendRecv kernel launched for all_to_all is an all-to-all; a Generic kernel is whatever collective it ran."""
    assert classify_name("ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)", "", RULES,
                         collective) == category
    if collective:
        assert classify_name("ncclDevKernel_Generic_1(ncclDevKernelArgsStorage<4096ul>)", "", RULES,
                             collective) == category


def test_kineto_collective_name_and_peer_copies_reach_the_op_graph(tmp_path):
    import json

    from harness.ops.load import load_op_trace

    def event(name, ts, **args):
        return {"ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": 7, "ts": ts, "dur": 5,
                "args": {"stream": 7, **args}}

    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": [
        event("ncclDevKernel_SendRecv(ncclDevKernelArgsStorage<4096ul>)", 0, **{"Collective name": "all_to_all"}),
        event("Memcpy PtoP (Device -> Device)", 10, bytes=4096)]}))
    a2a, peer = load_op_trace(path).ops
    assert a2a.category == "all_to_all"
    assert peer.category == "send_recv" and peer.bytes_sent == 4096 and peer.group_ranks == 2
